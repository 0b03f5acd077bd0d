package saga_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
)

// A backlog taken by a fresh process: backlogStarted instances that took
// their first step, then three Pings for each, and backlogNew new orders
// each followed by two Pings, all read at once, so the saga processor's
// partitions apply them in units of many events, several of them for the
// same instance and some starting it.
const (
	backlogStarted = 16
	backlogNew     = 4
)

// runBacklog runs the backlog on store and checks that every instance took
// its Pings once each, in order. during, when set, is called as the
// process that takes the backlog starts (true) and once it has (false).
func runBacklog(t *testing.T, store saga.Store, during func(on bool)) {
	t.Helper()
	ctx := context.Background()
	tracker, err := consistency.NewTracker(nil)
	require.NoError(t, err)
	a := startProcess(t, store, "a", tracker, false)
	for i := range backlogStarted {
		_, err := store.Append(ctx, fmt.Sprintf("order-%d", i), events.NoStream, events.Event{Data: OrderPlaced{OrderID: fmt.Sprint(i), Total: 10}})
		require.NoError(t, err)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		running, err := a.eng.List(ctx, saga.Filter{Status: saga.StatusRunning})
		require.NoError(c, err)
		assert.Len(c, running, backlogStarted)
	}, 30*time.Second, 5*time.Millisecond)
	a.stop(t)

	want := map[string][]int{}
	for n := range 3 {
		for i := range backlogStarted {
			id := fmt.Sprint(i)
			_, err := store.Append(ctx, "order-"+id, events.AnyVersion, events.Event{Data: Ping{OrderID: id, N: n}})
			require.NoError(t, err)
			want[id] = append(want[id], n)
		}
	}
	for i := range backlogNew {
		id := fmt.Sprint(backlogStarted + i)
		evs := []events.Event{{Data: OrderPlaced{OrderID: id, Total: 10}}, {Data: Ping{OrderID: id, N: 0}}, {Data: Ping{OrderID: id, N: 1}}}
		_, err := store.Append(ctx, "order-"+id, events.NoStream, evs...)
		require.NoError(t, err)
		want[id] = []int{0, 1}
	}

	if during != nil {
		during(true)
	}
	b := startProcess(t, store, "b", tracker, false)
	defer b.stop(t)
	got := map[string][]int{}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for id, w := range want {
			tl, err := b.eng.Show(ctx, orders, id)
			if errors.Is(err, saga.ErrNotFound) {
				c.Errorf("order %s not started yet", id) // a new order
				return
			}
			require.NoError(c, err)
			var st orderState
			require.NoError(c, json.Unmarshal(tl.Info.State, &st))
			got[id] = st.Pings
			if len(st.Pings) < len(w) {
				c.Errorf("order %s took pings %v so far, want %v", id, st.Pings, w)
				return
			}
		}
	}, 30*time.Second, 5*time.Millisecond)
	if during != nil {
		during(false)
	}
	require.Equal(t, want, got, "each Ping applied once, in order")
}

// TestUnitOfManyEventsAppliesEachOnceInOrder: events sharing a unit (the
// engine reads their instances together at its head) still run their steps
// as if delivered one by one.
func TestUnitOfManyEventsAppliesEachOnceInOrder(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		runBacklog(t, newStore(t, mk), nil)
	})
}

// TestUnitOfManyEventsReadsItsInstancesAtOnce: on PostgreSQL the steps of a
// unit of many events read their instances without a statement each: one
// read at the head of the unit, one per instance started in it (its claim),
// and none for an instance the unit already wrote and holds locked.
func TestUnitOfManyEventsReadsItsInstancesAtOnce(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	var on atomic.Bool
	var lockedReads, prefetches atomic.Int64
	pool := db.Traced(t, func(sql string, args []any) {
		switch {
		case !on.Load():
		case strings.HasPrefix(sql, "SELECT namespace, tbl, key, value"):
			prefetches.Add(1)
		case strings.HasPrefix(sql, "SELECT value, major, minor") && strings.HasSuffix(sql, "FOR UPDATE") && len(args) > 1 && args[1] == "instances":
			lockedReads.Add(1)
		}
	})
	store, err := pgstore.New(context.Background(), pool, &pgstore.Config{Schema: db.Schema, Registry: registry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	runBacklog(t, store, on.Store)
	// Without the prefetch every instance's first step in the unit
	// reads it alone (20 here). An event alone in its unit still does: on
	// a loaded server the first read can find part of the backlog (an open
	// transaction elsewhere holds the rest back).
	require.Positive(t, prefetches.Load())
	require.Less(t, lockedReads.Load(), int64((backlogStarted+backlogNew)/2), "steps read their instances at the head of the unit, not by themselves")
}
