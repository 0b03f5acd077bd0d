package converge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// TestTwoProcessesSplitTheSagaPartitions: two processes running the same
// Config split the saga partitions between them (both hold some), and
// each event is applied by exactly one of them: every order's card is
// charged once, and every saga completes (the package doc's promise).
func TestTwoProcessesSplitTheSagaPartitions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 24})
	mk := func() (*converge.Client, converge.Store) {
		st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, Registry: shopRegistry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		var c *converge.Client
		cfg := shop(st, func(name string) *projections.View { return c.Projections().View(name) })
		cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: 3 * time.Second}
		cfg.SagaPartitions = 4
		c, err = converge.NewClient(st, cfg)
		require.NoError(t, err)
		require.NoError(t, c.Start(ctx))
		t.Cleanup(func() { _ = c.Stop(context.Background()) })
		return c, st
	}
	a, st := mk()
	b, _ := mk()
	// Both hold some saga partitions.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		cs, err := st.Consumers(ctx)
		require.NoError(c, err)
		// A lease owner is "<Owner>/<instance>/<partition>": the process
		// is what comes before the partition.
		processes, held := map[string]int{}, 0
		for _, con := range cs {
			if strings.HasPrefix(con.Name, converge.DefaultSagaProcessor+"#") && con.Owner != "" {
				process := con.Owner[:strings.LastIndexByte(con.Owner, '/')]
				processes[process]++
				held++
			}
		}
		assert.Equal(c, 4, held, "every saga partition is held")
		assert.Len(c, processes, 2, "saga partitions by process: %v", processes)
	}, 30*time.Second, 50*time.Millisecond)

	const n = 40
	for i := range n {
		id := fmt.Sprint(i)
		_, err := a.Appender().Append(ctx, "order-"+id, events.NoStream, events.Event{Data: OrderPlaced{OrderID: id, Cents: i}, Metadata: events.Metadata{CorrelationID: id}})
		require.NoError(t, err)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		done, err := b.Sagas().List(ctx, saga.Filter{Saga: "checkout", Status: saga.StatusCompleted})
		require.NoError(c, err)
		assert.Len(c, done, n)
	}, 60*time.Second, 20*time.Millisecond)
	for i := range n {
		envs, err := st.ReadStream(ctx, "card-"+fmt.Sprint(i), 1, 100)
		require.NoError(t, err)
		require.Len(t, envs, 1, "order %d charged once", i)
	}
}
