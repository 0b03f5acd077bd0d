package converge_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
)

// TestClientRunsOnOneConnection: projections, gated saga steps that read a
// read model, and command handlers all make progress on a pool of a single
// connection, because nothing holding a unit's connection waits for a
// second one. When the gate read the saga instance through the pool behind
// the head of a unit, this deadlocked at once (as did any pool smaller
// than the saga partitions).
func TestClientRunsOnOneConnection(t *testing.T) {
	t.Parallel()
	runShopOn(t, &pgtest.Config{MaxConns: 1})
}

// TestClientRunsOnTheSimpleProtocol: the whole application runs on
// connections that send every statement as text, unprepared (pgx's simple
// protocol, which poolers in transaction mode without prepared statements
// need). Event ids once went out in a form pgx can only send in binary.
func TestClientRunsOnTheSimpleProtocol(t *testing.T) {
	t.Parallel()
	runShopOn(t, &pgtest.Config{MaxConns: 8, ExecMode: pgx.QueryExecModeSimpleProtocol})
}

// runShopOn places orders before the client starts, so every consumer
// starts behind and applies them in batches (gates and read-model reads
// then run behind the head of units that already hold a connection), and
// checks that every order's saga completes.
func runShopOn(t *testing.T, cfg *pgtest.Config) {
	t.Helper()
	db := pgtest.New(t, cfg)
	ctx := context.Background()
	store, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	const n = 40
	for i := range n {
		id := fmt.Sprint(i)
		_, err := store.Append(ctx, "order-"+id, events.NoStream, events.Event{
			Data: OrderPlaced{OrderID: id, Cents: 100 * i}, Metadata: events.Metadata{CorrelationID: id},
		})
		require.NoError(t, err)
	}
	client := newShop(t, store)
	require.NoError(t, client.Start(ctx))
	defer func() { require.NoError(t, client.Stop(ctx)) }()

	require.EventuallyWithT(t, func(c *assert.CollectT) {
		done, err := client.Sagas().List(ctx, saga.Filter{Saga: "checkout", Status: saga.StatusCompleted})
		require.NoError(c, err)
		assert.Len(c, done, n, "sagas completed")
	}, 60*time.Second, 20*time.Millisecond)
	require.Positive(t, client.GateStats().Gated, "the first steps were gated on the read model")
}
