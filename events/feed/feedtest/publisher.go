package feedtest

import (
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

func newPublisher(t *testing.T, s events.Store, cfg *feed.PublisherConfig) *feed.Publisher {
	t.Helper()
	pub, err := feed.NewPublisher(s, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, pub.Close()) })
	return pub
}

func testPublishJSON(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	pub := newPublisher(t, s, nil)
	msg := message.NewMessage(uuid.NewString(), []byte(`{"order_id": "42", "amount": 7}`))
	msg.Metadata.Set(feed.MetaType, "order.placed")
	msg.Metadata.Set(feed.MetaCorrelationID, "corr-1")
	msg.Metadata.Set(feed.MetaCausationID, "cause-1")
	msg.Metadata.Set("tenant", "acme")
	require.NoError(t, pub.Publish("order-42", msg))
	plain := message.NewMessage(uuid.NewString(), []byte(`[1, 2]`))
	require.NoError(t, pub.Publish("order-42", plain))

	all := awaitAll(t, s, 2)
	stored := all[0]
	require.Equal(t, "order-42", stored.StreamID)
	require.Equal(t, "order.placed", stored.Type)
	require.Equal(t, 1, stored.SchemaVersion)
	require.JSONEq(t, string(msg.Payload), string(stored.Payload))
	require.Equal(t, events.Metadata{
		CorrelationID: "corr-1",
		CausationID:   "cause-1",
		Extra:         map[string]string{"tenant": "acme", feed.MetaWatermillUUID: msg.UUID},
	}, stored.Metadata)
	require.Equal(t, feed.DefaultPublishType, all[1].Type)

	cm := newCommits()
	name := uniqueName("publish")
	ch := subscribe(t, newSubscriber(t, src, config(name, cm)), "order")
	got := receive(t, ch)
	require.Equal(t, msg.UUID, got.UUID, "the message keeps its UUID through the store")
	require.Equal(t, stored.ID, got.Metadata.Get(feed.MetaEventID))
	require.JSONEq(t, string(msg.Payload), string(got.Payload))
	for _, k := range []string{feed.MetaType, feed.MetaCorrelationID, feed.MetaCausationID, "tenant"} {
		require.Equal(t, msg.Metadata.Get(k), got.Metadata.Get(k), "metadata %q", k)
	}
	require.True(t, got.Ack())
	got = receive(t, ch)
	require.Equal(t, plain.UUID, got.UUID)
	require.True(t, got.Ack())
	cm.await(t, feed.CheckpointName(name, "order"), all[1].Token)
}

func testPublishIdempotent(t *testing.T, s events.Store, _ feed.Source) {
	t.Helper()
	pub := newPublisher(t, s, nil)
	msg := message.NewMessage(uuid.NewString(), []byte(`{}`))
	require.NoError(t, pub.Publish("order-1", msg))
	require.NoError(t, pub.Publish("order-1", msg), "a retried publish succeeds")
	require.NoError(t, pub.Publish("order-1", msg.Copy()))
	// The same message on another topic is another event, as in Watermill.
	require.NoError(t, pub.Publish("order-2", msg))
	all := awaitAll(t, s, 2)
	require.Equal(t, "order-1", all[0].StreamID)
	require.Equal(t, "order-2", all[1].StreamID)
	require.NotEqual(t, all[0].ID, all[1].ID)

	// A message without a UUID cannot be recognised again: each publish
	// appends.
	anon := message.NewMessage("", []byte(`{}`))
	require.NoError(t, pub.Publish("order-3", anon, anon))
	n, err := s.StreamVersion(t.Context(), "order-3")
	require.NoError(t, err)
	require.Equal(t, int64(2), n)
}

func testPublishRejectsNonJSON(t *testing.T, s events.Store, _ feed.Source) {
	t.Helper()
	pub := newPublisher(t, s, nil)
	err := pub.Publish("order-1", message.NewMessage(uuid.NewString(), []byte("x")))
	require.ErrorIs(t, err, events.ErrInvalidEvent)
	require.ErrorContains(t, err, "EncodingBase64", "the error names the fix")
	err = pub.Publish(feed.TopicAll, message.NewMessage(uuid.NewString(), []byte(`{}`)))
	require.ErrorIs(t, err, events.ErrInvalidEvent)
	bad := message.NewMessage(uuid.NewString(), []byte(`{}`))
	bad.Metadata.Set(feed.MetaSchemaVersion, "two")
	require.ErrorIs(t, pub.Publish("order-1", bad), events.ErrInvalidEvent)
	v, err := s.StreamVersion(t.Context(), "order-1")
	require.NoError(t, err)
	require.Zero(t, v)

	require.NoError(t, pub.Close())
	require.ErrorIs(t, pub.Publish("order-1", message.NewMessage(uuid.NewString(), []byte(`{}`))), events.ErrClosed)
}

func testPublishBase64(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	pub := newPublisher(t, s, &feed.PublisherConfig{Encoding: feed.EncodingBase64})
	payloads := [][]byte{[]byte("x"), {0, 0xff, '"', '\\', 0x7f}, {}, []byte(`{"a":   1}`)}
	for _, p := range payloads {
		require.NoError(t, pub.Publish("blob-1", message.NewMessage(uuid.NewString(), p)))
	}
	all := awaitAll(t, s, len(payloads))
	require.Equal(t, string(feed.EncodingBase64), all[0].Metadata.Extra[feed.MetaEncoding])

	cm := newCommits()
	name := uniqueName("base64")
	ch := subscribe(t, newSubscriber(t, src, config(name, cm)), "blob")
	for i, p := range payloads {
		msg := receive(t, ch)
		require.Equal(t, p, []byte(msg.Payload), "payload %d: the exact bytes come back", i)
		env, err := feed.EnvelopeFromMessage(msg)
		require.NoError(t, err)
		require.JSONEq(t, string(all[i].Payload), string(env.Payload), "the envelope has the payload as stored")
		require.True(t, msg.Ack())
	}
	cm.await(t, feed.CheckpointName(name, "blob"), all[len(all)-1].Token)
}

func testPublishStreamFromMetadata(t *testing.T, s events.Store, _ feed.Source) {
	t.Helper()
	pub := newPublisher(t, s, nil)
	msg := message.NewMessage(uuid.NewString(), []byte(`{}`))
	msg.Metadata.Set(feed.MetaStreamID, "order-7")
	msg.Metadata.Set(feed.MetaSchemaVersion, "3")
	// Position keys of a delivered message are not stored again.
	msg.Metadata.Set(feed.MetaToken, events.MakeToken(1, 1).String())
	msg.Metadata.Set(feed.MetaVersion, "9")
	require.NoError(t, pub.Publish("ignored-topic", msg))
	all := awaitAll(t, s, 1)
	require.Equal(t, "order-7", all[0].StreamID)
	require.Equal(t, 3, all[0].SchemaVersion)
	require.Equal(t, map[string]string{feed.MetaWatermillUUID: msg.UUID}, all[0].Metadata.Extra)
}
