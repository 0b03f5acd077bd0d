package feed_test

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// heartbeatFailingSource fails its membership heartbeats while failing is
// set; leases, reads and rows work.
type heartbeatFailingSource struct {
	feed.Source
	cps heartbeatFailingCheckpoints
}

type heartbeatFailingCheckpoints struct {
	feed.CheckpointStore
	failing *atomic.Bool
}

func (s heartbeatFailingSource) Checkpoints() feed.CheckpointStore { return s.cps }

func (c heartbeatFailingCheckpoints) Heartbeat(ctx context.Context, group, member string, ttl time.Duration) ([]string, error) {
	if c.failing.Load() {
		return nil, errors.New("injected: heartbeat failed")
	}
	return c.CheckpointStore.Heartbeat(ctx, group, member, ttl)
}

// TestMemberWhoseHeartbeatFailsForATTLOwnsNothing: a process whose
// membership heartbeats fail for a lease TTL while its leases renew has
// expired for every other process; it now owns nothing (IsAssigned false,
// its partition released) until a heartbeat answers. It used to keep the
// last known members and deliver on: a newer build's process joining
// then saw itself alone, its AwaitTakeover returned while the older
// process held the partition, and the older one filtered out an event
// only the newer build handles, for good.
func TestMemberWhoseHeartbeatFailsForATTLOwnsNothing(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	seen := &hfSeen{}
	var failing atomic.Bool
	start := func(src feed.Source, who string, types []string) *feed.Processor {
		return runRecording(t, src, "hb-lost", who, types, 600*time.Millisecond, seen)
	}
	older := start(heartbeatFailingSource{Source: st, cps: heartbeatFailingCheckpoints{CheckpointStore: st.Checkpoints(), failing: &failing}}, "a-old", []string{"a"})
	require.Eventually(t, func() bool { return hfActive(older) }, 5*time.Second, 5*time.Millisecond)

	failing.Store(true)
	require.Eventually(t, func() bool {
		ok, _ := older.IsAssigned()
		return !ok && !hfActive(older)
	}, 10*time.Second, 5*time.Millisecond, "a process whose heartbeats failed for a TTL still owns its partition")

	newer := start(st, "b-new", []string{"a", "b"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	require.NoError(t, newer.AwaitTakeover(ctx))
	hfAppend(t, st, "s-1", "b")
	hfAppend(t, st, "s-1", "a")
	failing.Store(false) // the older process's heartbeats come back
	require.Eventually(t, func() bool { return seen.has("b-new:a") }, 10*time.Second, 5*time.Millisecond)
	require.True(t, seen.has("b-new:b"), "the newer build's event b was delivered by nobody: seen %v", seen.list())
}

// TestIsAssignedFalseAfterTheStoreClosed: a process whose store is closed
// under it (a shutdown that closes the store first) stops owning
// anything: the channel IsAssigned returned closes, and after Close
// IsAssigned is false. The membership loop used to return on the closed
// store without clearing its members.
func TestIsAssignedFalseAfterTheStoreClosed(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(nil)
	require.NoError(t, err)
	quiet := slog.New(slog.DiscardHandler)
	start := func(who string) (*feed.Processor, chan struct{}) {
		p, err := feed.NewProcessor(st, &feed.ProcessorConfig{
			Name: "closed-store", Partitions: 1, Logger: quiet,
			Subscriber: feed.SubscriberConfig{Owner: who, LeaseTTL: time.Second, RenewInterval: 20 * time.Millisecond, Logger: quiet},
		}, func(context.Context, events.Envelope) error { return nil })
		require.NoError(t, err)
		done := make(chan struct{})
		go func() { _ = p.Run(context.Background()); close(done) }()
		return p, done
	}
	a, aDone := start("a")
	b, bDone := start("b")
	require.Eventually(t, func() bool {
		return len(a.Status().Members) == 2 && len(b.Status().Members) == 2
	}, 5*time.Second, 5*time.Millisecond)
	ok, changed := b.IsAssigned()
	require.True(t, ok, "b is one of the two members the partitions are split among")

	require.NoError(t, st.Close())
	<-aDone
	select {
	case <-changed:
	case <-time.After(10 * time.Second):
		t.Fatal("IsAssigned's channel did not close when b's store closed")
	}
	require.NoError(t, b.Close())
	<-bDone
	ok, _ = b.IsAssigned()
	require.False(t, ok, "IsAssigned is true after Close")
}

// TestAwaitTakeoverWaitsOutAHeartbeatOutage: a newer build's process
// whose heartbeats fail for longer than its lease TTL owns nothing
// meanwhile, and its AwaitTakeover does not return until it has taken
// over once they answer again. It returned while the process owned
// nothing (an event only the newer build handles, appended then, was
// filtered out by the older process for good).
func TestAwaitTakeoverWaitsOutAHeartbeatOutage(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	seen := &hfSeen{}
	var failing atomic.Bool
	start := func(src feed.Source, who string, types []string, ttl time.Duration) *feed.Processor {
		return runRecording(t, src, "hb-outage", who, types, ttl, seen)
	}
	older := start(st, "a-old", []string{"a"}, 3*time.Second)
	require.Eventually(t, func() bool { return hfActive(older) }, 10*time.Second, 5*time.Millisecond)
	newer := start(heartbeatFailingSource{Source: st, cps: heartbeatFailingCheckpoints{CheckpointStore: st.Checkpoints(), failing: &failing}},
		"b-new", []string{"a", "b"}, 300*time.Millisecond)
	require.Eventually(t, func() bool { ok, _ := newer.IsAssigned(); return ok }, 10*time.Second, time.Millisecond)

	failing.Store(true)
	require.Eventually(t, func() bool {
		st := newer.Status()
		return len(st.Members) == 0 && !hfActive(newer)
	}, 10*time.Second, time.Millisecond, "the newer process still owns something after a TTL of failed heartbeats")
	taken := make(chan error, 1)
	go func() { taken <- newer.AwaitTakeover(context.Background()) }()
	// While it owns nothing, it has taken nothing over: the older process
	// delivers. Its heartbeat loop runs every 100 ms; several pass here.
	require.Never(t, func() bool { return len(taken) > 0 }, 500*time.Millisecond, 10*time.Millisecond,
		"AwaitTakeover returned while the process owned nothing")
	failing.Store(false)
	select {
	case err := <-taken:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("AwaitTakeover did not return once the heartbeats answered")
	}
	require.True(t, hfActive(newer), "AwaitTakeover returned before the newer process delivered")
	hfAppend(t, st, "s-1", "b")
	require.Eventually(t, func() bool { return seen.has("b-new:b") }, 10*time.Second, 5*time.Millisecond)
}

// runRecording runs a one-partition processor of the given name and
// owner on src, its handler noting "who:type" in seen, until the test
// ends.
func runRecording(t *testing.T, src feed.Source, name, who string, types []string, ttl time.Duration, seen *hfSeen) *feed.Processor {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	p, err := feed.NewProcessor(src, &feed.ProcessorConfig{
		Name: name, Types: types, Partitions: 1, Logger: quiet,
		Subscriber: feed.SubscriberConfig{Owner: who, LeaseTTL: ttl, RenewInterval: ttl / 3, Logger: quiet},
	}, func(_ context.Context, env events.Envelope) error {
		seen.add(who + ":" + env.Type)
		return nil
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done; _ = p.Close() })
	return p
}
