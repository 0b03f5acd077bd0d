package feed_test

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

func TestMetadataKeys(t *testing.T) {
	t.Parallel()
	require.Equal(t, middleware.CorrelationIDMetadataKey, feed.MetaCorrelationID)
	require.Equal(t, "causation_id", feed.MetaCausationID)
	require.Equal(t, "converge_stream_id", feed.MetaStreamID)
}

func TestHelpersRejectForeignMessages(t *testing.T) {
	t.Parallel()
	msg := message.NewMessage("m-1", []byte(`{}`))
	_, err := feed.TokenFromMessage(msg)
	require.ErrorIs(t, err, feed.ErrNotFeedMessage)
	_, err = feed.EnvelopeFromMessage(msg)
	require.ErrorIs(t, err, feed.ErrNotFeedMessage)

	msg.Metadata.Set(feed.MetaToken, "not-a-token")
	_, err = feed.TokenFromMessage(msg)
	require.ErrorIs(t, err, events.ErrInvalidToken)
}

func TestEnvelopeFromMessageNamesBadField(t *testing.T) {
	t.Parallel()
	good := func() *message.Message {
		msg := message.NewMessage("m-1", []byte(`{"a":1}`))
		msg.Metadata.Set(feed.MetaEventID, "0195f0b4-0000-7000-8000-000000000001")
		msg.Metadata.Set(feed.MetaStreamID, "order-1")
		msg.Metadata.Set(feed.MetaType, "order.placed")
		msg.Metadata.Set(feed.MetaVersion, "2")
		msg.Metadata.Set(feed.MetaSchemaVersion, "1")
		msg.Metadata.Set(feed.MetaToken, events.MakeToken(3, 4).String())
		msg.Metadata.Set(feed.MetaRecordedAt, "2026-01-02T03:04:05.123456Z")
		msg.Metadata.Set("tenant", "acme")
		return msg
	}
	env, err := feed.EnvelopeFromMessage(good())
	require.NoError(t, err)
	require.Equal(t, events.Envelope{
		ID:            "0195f0b4-0000-7000-8000-000000000001",
		StreamID:      "order-1",
		Version:       2,
		Type:          "order.placed",
		SchemaVersion: 1,
		Payload:       json.RawMessage(`{"a":1}`),
		Metadata:      events.Metadata{Extra: map[string]string{"tenant": "acme"}},
		RecordedAt:    time.Date(2026, 1, 2, 3, 4, 5, 123456000, time.UTC),
		Token:         events.MakeToken(3, 4),
	}, env)

	for _, key := range []string{feed.MetaVersion, feed.MetaSchemaVersion, feed.MetaRecordedAt} {
		msg := good()
		msg.Metadata.Set(key, "garbage")
		_, err := feed.EnvelopeFromMessage(msg)
		require.ErrorContains(t, err, key)
	}
}

// envelopeMetaKeys are the message keys that describe the envelope itself.
var envelopeMetaKeys = []string{
	feed.MetaStreamID, feed.MetaVersion, feed.MetaType, feed.MetaSchemaVersion, feed.MetaToken,
	feed.MetaEventID, feed.MetaRecordedAt, feed.MetaCorrelationID, feed.MetaCausationID,
	feed.MetaPayloadAsStored,
}

// randomStoredMetadata returns metadata a store could hold, its Extra keys
// drawn so that every envelope key, escaped forms of them, the Extra keys
// the feed itself reads and keys merely starting like an escape all come up.
func randomStoredMetadata(r *rand.Rand) events.Metadata {
	text := func() string {
		return []string{"", "x", "from-extra", "ünïcödé 流", "a b=c", strings.Repeat("v", 1+r.IntN(40)), uuid.NewString()}[r.IntN(7)]
	}
	key := func() string {
		switch r.IntN(5) {
		case 0, 1:
			return envelopeMetaKeys[r.IntN(len(envelopeMetaKeys))]
		case 2:
			return strings.Repeat(feed.MetaExtraPrefix, 1+r.IntN(3)) + envelopeMetaKeys[r.IntN(len(envelopeMetaKeys))]
		case 3:
			return strings.Repeat(feed.MetaExtraPrefix, r.IntN(3)) +
				[]string{feed.MetaWatermillUUID, feed.MetaEncoding, "tenant", "", "converge_extra", "correlation_id_x", feed.MetaExtraPrefix}[r.IntN(7)]
		}
		return text()
	}
	var m events.Metadata
	if r.IntN(2) == 0 {
		m.CorrelationID = text()
	}
	if r.IntN(2) == 0 {
		m.CausationID = text()
	}
	for range r.IntN(6) {
		if m.Extra == nil {
			m.Extra = map[string]string{}
		}
		m.Extra[key()] = text()
	}
	if _, ok := m.Extra[feed.MetaEncoding]; ok && r.IntN(2) == 0 {
		m.Extra[feed.MetaEncoding] = string(feed.EncodingBase64)
	}
	return m
}

// randomEnvelope returns a stored event with random metadata. A payload
// marked EncodingBase64 is mostly a base64 JSON string, as a Publisher
// stores it, and now and then JSON that does not decode (appended with
// the mark by hand): delivered as stored, and given back as stored.
func randomEnvelope(r *rand.Rand) events.Envelope {
	env := events.Envelope{
		ID:            uuid.NewString(),
		StreamID:      fmt.Sprintf("order-%d", r.IntN(100)),
		Version:       1 + r.Int64N(1<<40),
		Type:          "t",
		SchemaVersion: 1 + r.IntN(5),
		Payload:       json.RawMessage(fmt.Sprintf(`{"n":%d}`, r.IntN(1000))),
		Metadata:      randomStoredMetadata(r),
		RecordedAt:    time.Unix(0, r.Int64N(1<<62)).UTC(),
		Token:         events.MakeToken(r.Uint64N(1<<62), r.Uint64N(1<<62)),
	}
	if feed.Encoding(env.Metadata.Extra[feed.MetaEncoding]) == feed.EncodingBase64 && r.IntN(4) > 0 {
		raw := make([]byte, r.IntN(20))
		for i := range raw {
			raw[i] = byte(r.IntN(256))
		}
		b, err := json.Marshal(base64.StdEncoding.EncodeToString(raw))
		if err != nil {
			panic(err)
		}
		env.Payload = b
	}
	return env
}

// TestMessageRoundTripsStoredMetadata: whatever metadata an event holds,
// its message carries the envelope's own values under the envelope keys
// (an Extra entry named like one never stands in for it, so Watermill's
// CorrelationID middleware sees the event's correlation id or none), and
// EnvelopeFromMessage gives the envelope back exactly as stored.
func TestMessageRoundTripsStoredMetadata(t *testing.T) {
	t.Parallel()
	// The case that was found: extras named like the ids, which are empty.
	env := events.Envelope{
		ID: "0190a5b0-0000-7000-8000-000000000001", StreamID: "order-1", Version: 1, Type: "t", SchemaVersion: 1,
		Payload:    json.RawMessage(`{}`),
		Metadata:   events.Metadata{Extra: map[string]string{"correlation_id": "from-extra", "causation_id": "also-extra"}},
		RecordedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), Token: events.MakeToken(1, 1),
	}
	msg, err := feed.MessageFromEnvelope(env)
	require.NoError(t, err)
	require.Empty(t, middleware.MessageCorrelationID(msg), "an extra is not the message's correlation id")
	back, err := feed.EnvelopeFromMessage(msg)
	require.NoError(t, err)
	require.Equal(t, env, back)

	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	for range 3000 {
		env := randomEnvelope(r)
		msg, err := feed.MessageFromEnvelope(env)
		marked := feed.Encoding(env.Metadata.Extra[feed.MetaEncoding]) == feed.EncodingBase64
		if marked && env.Payload[0] != '"' {
			require.Error(t, err, "seed %d: a marked payload that does not decode is reported", seed)
			require.Equal(t, string(env.Payload), string(msg.Payload), "seed %d: and delivered as stored", seed)
		} else {
			require.NoError(t, err, "seed %d", seed)
		}
		md := msg.Metadata
		for key, want := range map[string]string{
			feed.MetaStreamID:      env.StreamID,
			feed.MetaVersion:       strconv.FormatInt(env.Version, 10),
			feed.MetaType:          env.Type,
			feed.MetaSchemaVersion: strconv.Itoa(env.SchemaVersion),
			feed.MetaToken:         env.Token.String(),
			feed.MetaEventID:       env.ID,
			feed.MetaRecordedAt:    env.RecordedAt.Format(time.RFC3339Nano),
			feed.MetaCorrelationID: env.Metadata.CorrelationID,
			feed.MetaCausationID:   env.Metadata.CausationID,
		} {
			require.Equal(t, want, md.Get(key), "seed %d: %s of a message whose event has extras %q", seed, key, env.Metadata.Extra)
		}
		back, err := feed.EnvelopeFromMessage(msg)
		require.NoError(t, err, "seed %d", seed)
		require.Equal(t, env, back, "seed %d: the envelope comes back as stored", seed)
	}
}

// TestPublisherForwardKeepsStoredExtra: a delivered message published again
// stores its event's Extra as it was, keys named like envelope keys
// included, with the Publisher's own keys (the message UUID, and no
// encoding mark for a JSON payload).
func TestPublisherForwardKeepsStoredExtra(t *testing.T) {
	t.Parallel()
	s, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	pub, err := feed.NewPublisher(s, nil)
	require.NoError(t, err)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	for range 200 {
		env := randomEnvelope(r)
		if feed.Encoding(env.Metadata.Extra[feed.MetaEncoding]) == feed.EncodingBase64 {
			continue // delivered as raw bytes, which a JSON Publisher refuses
		}
		msg, err := feed.MessageFromEnvelope(env)
		require.NoError(t, err, "seed %d", seed)
		// As a handler forwarding to another stream would.
		stream := "forwarded-" + uuid.NewString()
		delete(msg.Metadata, feed.MetaStreamID)
		require.NoError(t, pub.Publish(stream, msg), "seed %d", seed)
		got, err := s.ReadStream(t.Context(), stream, 1, 0)
		require.NoError(t, err)
		require.Len(t, got, 1)
		want := map[string]string{}
		for k, v := range env.Metadata.Extra {
			want[k] = v
		}
		delete(want, feed.MetaEncoding)
		want[feed.MetaWatermillUUID] = msg.UUID
		require.Equal(t, want, got[0].Metadata.Extra, "seed %d: forwarded extras %q", seed, env.Metadata.Extra)
		require.Equal(t, env.Metadata.CorrelationID, got[0].Metadata.CorrelationID, "seed %d", seed)
		require.Equal(t, env.Metadata.CausationID, got[0].Metadata.CausationID, "seed %d", seed)
	}
}
