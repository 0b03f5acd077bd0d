package feed_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
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
