package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"
)

// TestWatermillSQLFallsIntoTheOrderingTrap documents why the feed is not
// watermill-sql's subscriber: run the trap of TestOrderingTrap through
// watermill-sql v4 (ordered by raw transaction id) and the second event of
// a stream is delivered before the first. Should a future watermill-sql
// order these correctly, this test fails and the choice can be revisited.
func TestWatermillSQLFallsIntoTheOrderingTrap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil, 6)
	_, err := b.db.Pool.Exec(ctx, "CREATE TABLE side (v int)")
	require.NoError(t, err)
	logger := watermill.NopLogger{}
	schema := wsql.DefaultPostgreSQLSchema{}
	const topic = "order_42"

	sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(b.db.Pool), wsql.SubscriberConfig{
		ConsumerGroup:    "trap",
		PollInterval:     10 * time.Millisecond,
		SchemaAdapter:    schema,
		OffsetsAdapter:   wsql.DefaultPostgreSQLOffsetsAdapter{},
		InitializeSchema: true,
	}, logger)
	require.NoError(t, err)
	defer func() { require.NoError(t, sub.Close()) }()
	require.NoError(t, sub.SubscribeInitialize(topic))

	early, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = early.Rollback(ctx) }()
	_, err = early.Exec(ctx, "INSERT INTO side VALUES (1)") // takes the older transaction id
	require.NoError(t, err)

	// Version 1 of the stream commits first, in a younger transaction.
	pub, err := wsql.NewPublisher(wsql.BeginnerFromPgx(b.db.Pool), wsql.PublisherConfig{SchemaAdapter: schema}, logger)
	require.NoError(t, err)
	require.NoError(t, pub.Publish(topic, message.NewMessage("00000000-0000-0000-0000-000000000001", []byte(`{"version":1}`))))
	// Version 2 follows it, from the older transaction.
	txPub, err := wsql.NewPublisher(wsql.TxFromPgx(early), wsql.PublisherConfig{SchemaAdapter: schema}, logger)
	require.NoError(t, err)
	require.NoError(t, txPub.Publish(topic, message.NewMessage("00000000-0000-0000-0000-000000000002", []byte(`{"version":2}`))))
	require.NoError(t, early.Commit(ctx))

	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	msgs, err := sub.Subscribe(sctx, topic)
	require.NoError(t, err)
	var order []string
	for len(order) < 2 {
		select {
		case m := <-msgs:
			order = append(order, string(m.Payload))
			m.Ack()
		case <-sctx.Done():
			t.Fatalf("watermill-sql delivered %v only", order)
		}
	}
	require.Equal(t, []string{`{"version":2}`, `{"version":1}`}, order,
		"watermill-sql orders by transaction id: the stream's second event comes first")
}
