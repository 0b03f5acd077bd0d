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
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// TestStopHandsTheSagaPartitionsToARunningProcess: when one of two
// processes running the same Config stops, the other takes over the saga
// partitions it held well before a lease TTL, since Stop releases its
// leases and leaves the membership group: an order of such a partition,
// placed once it stopped, completes within the lease TTL.
//
// (The process that stays learns of the departure at its next membership
// heartbeat, every third of the lease TTL: the takeover is that quick, not
// at once.)
func TestStopHandsTheSagaPartitionsToARunningProcess(t *testing.T) {
	t.Parallel()
	const ttl = 6 * time.Second
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	store, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	mk := func() *converge.Client {
		var c *converge.Client
		cfg := shop(store, func(name string) *projections.View { return c.Projections().View(name) })
		cfg.Subscriber = feed.SubscriberConfig{LeaseTTL: ttl}
		cfg.SagaPartitions = 2
		c, err := converge.NewClient(store, cfg)
		require.NoError(t, err)
		require.NoError(t, c.Start(ctx))
		return c
	}
	leaving := mk()
	leavingStopped := false
	defer func() {
		if !leavingStopped {
			stopQuietly(leaving)
		}
	}()
	staying := mk()
	t.Cleanup(func() { stopQuietly(staying) })

	// Wait until each process holds one saga partition, and note the
	// leaving one's.
	member := leaving.SagaProcessor().Status().Member
	held := -1
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		cs, err := store.Consumers(ctx)
		require.NoError(c, err)
		byProcess := map[string][]int{}
		for _, con := range cs {
			for i, name := range leaving.SagaProcessor().CheckpointNames() {
				if con.Name == name && con.Owner != "" {
					process := con.Owner[:strings.LastIndexByte(con.Owner, '/')]
					byProcess[process] = append(byProcess[process], i)
				}
			}
		}
		if assert.Len(c, byProcess, 2, "saga partitions by process: %v", byProcess) && assert.Len(c, byProcess[member], 1) {
			held = byProcess[member][0]
		}
	}, 30*time.Second, 5*time.Millisecond)
	placeAndAwait(t, staying, 0, 2)

	require.NoError(t, leaving.Stop(ctx))
	leavingStopped = true
	stopped := time.Now()
	id := ""
	for i := 0; id == ""; i++ {
		if feed.PartitionOf(fmt.Sprint("t", i), 2) == held {
			id = fmt.Sprint("t", i)
		}
	}
	_, err = staying.Appender().Append(ctx, "order-"+id, events.NoStream, events.Event{
		Data: OrderPlaced{OrderID: id, Cents: 1}, Metadata: events.Metadata{CorrelationID: id},
	})
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		tl, err := staying.Sagas().Show(ctx, "checkout", id)
		require.NoError(c, err)
		assert.Equal(c, saga.StatusCompleted, tl.Info.Status)
	}, 30*time.Second, 5*time.Millisecond)
	took := time.Since(stopped)
	require.Less(t, took, ttl, "the staying process took the partition over only after a lease TTL (%s)", took)
	t.Logf("took over in %s", took)
}
