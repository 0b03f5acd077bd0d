package projections_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// gatedRenames is a strong projection of Renamed that upserts each
// account's name (order matters: the row is the latest event's) and holds
// the nth apply of the event with the id gate holds until release fires.
func gatedRenames(name string, nth int, gate *atomic.Value, entered, release *once, partitions ...int) *projections.Projection {
	var mu sync.Mutex
	calls := map[string]int{}
	p := projections.New(name, &projections.Config{Class: consistency.Strong, Partitions: append(partitions, 1)[0]})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Renamed) error {
		mu.Lock()
		calls[env.ID]++
		n := calls[env.ID]
		mu.Unlock()
		if id, _ := gate.Load().(string); env.ID == id && n == nth {
			entered.fire()
			<-release.C()
		}
		return tx.Table("accounts").Put(ctx, e.Account, Account{Name: e.Name})
	})
	return p
}

// TestStrongAppendWaitsItsTurnBehindUnappliedEvents: an event appended
// before the Runner started (so by no hook) is applied by the processor;
// a strong append made while the processor has not applied it yet must
// not be applied ahead of it. It was: the hook applied it at once and the
// processor then applied the older event over it and skipped it (marked),
// leaving the row at the older state for good, unlike a recomputation.
// It is refused, storing nothing, and applied at once once caught up.
func TestStrongAppendWaitsItsTurnBehindUnappliedEvents(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var gate atomic.Value
			entered, release := newOnce(), newOnce()
			p := gatedRenames("strong_unapplied", 1, &gate, entered, release)

			first := f.append(t, "acct-a", Renamed{"a", "old"})
			gate.Store(first.EventIDs[0])
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})
			await(t, entered.C(), "the processor applying the first event")

			_, err := f.store.Append(ctx, "acct-a", events.AnyVersion, events.Event{Data: Renamed{"a", "new"}})
			require.ErrorIs(t, err, projections.ErrStrongCatchingUp, "refused while the processor has the older event to apply")
			require.ErrorContains(t, err, "strong_unapplied")
			v, err := f.store.StreamVersion(ctx, "acct-a")
			require.NoError(t, err)
			require.Equal(t, int64(1), v, "the refused append stored nothing")
			release.fire()
			f.waitFor(t, first.Token, "strong_unapplied")

			// Caught up, appends are applied inline again.
			third := f.append(t, "acct-a", Renamed{"a", "newest"})
			now, _ := account(t, r, "strong_unapplied", "a")
			require.Equal(t, "newest", now.Name, "a read right after the append sees it")
			f.waitFor(t, third.Token, "strong_unapplied")
			require.NoError(t, r.Rebuild(ctx, "strong_unapplied"))
			rebuilt, _ := account(t, r, "strong_unapplied", "a")
			require.Equal(t, "newest", rebuilt.Name)
		})
	}
}

// TestStrongAppendDuringAResetReplayIsNotLost: a strong append made while
// a Reset replays the feed was applied at once, then the replay applied
// the older events over it and the processor skipped it (marked, after
// MarksUpTo): the row stayed at the older state for good. It is refused
// while the replay runs, and applied at once after.
func TestStrongAppendDuringAResetReplayIsNotLost(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var gate atomic.Value
			entered, release := newOnce(), newOnce()
			p := gatedRenames("strong_replay", 2, &gate, entered, release)
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})

			first := f.append(t, "acct-a", Renamed{"a", "old"})
			a, _ := account(t, r, "strong_replay", "a")
			require.Equal(t, "old", a.Name, "strong: read right after the append")

			gate.Store(first.EventIDs[0])
			require.NoError(t, r.Reset(ctx, "strong_replay", events.Token{}))
			await(t, entered.C(), "the replay of the first event")
			_, err := f.store.Append(ctx, "acct-a", events.AnyVersion, events.Event{Data: Renamed{"a", "new"}})
			require.ErrorIs(t, err, projections.ErrStrongCatchingUp, "refused while the replay runs")
			release.fire()
			f.awaitStored(t, "strong_replay", first.Token)
			a, _ = account(t, r, "strong_replay", "a")
			require.Equal(t, "old", a.Name, "the replay left the row at the only event's state")

			third := f.append(t, "acct-a", Renamed{"a", "newest"})
			a, _ = account(t, r, "strong_replay", "a")
			require.Equal(t, "newest", a.Name, "once the replay passed, appends are applied inline again")
			f.awaitStored(t, "strong_replay", third.Token)
		})
	}
}

// TestStrongAppendWaitsOnlyForItsOwnPartition: a split strong projection
// refuses an append only while the partition its events fall in has older
// events to apply; an append to another partition is applied at once.
func TestStrongAppendWaitsOnlyForItsOwnPartition(t *testing.T) {
	t.Parallel()
	// Two streams of different partitions (of 2, by stream).
	part := func(stream string) int {
		return feed.PartitionOf(feed.KeyOf(feed.ByStream, events.Envelope{StreamID: stream}), 2)
	}
	behind, other := "acct-a0", ""
	for i := 0; other == ""; i++ {
		if s := fmt.Sprintf("acct-b%d", i); part(s) != part(behind) {
			other = s
		}
	}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var gate atomic.Value
			entered, release := newOnce(), newOnce()
			defer release.fire()
			p := gatedRenames("strong_split", 1, &gate, entered, release, 2)

			first := f.append(t, behind, Renamed{"a", "old"}) // before the Runner: no hook
			gate.Store(first.EventIDs[0])
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})
			await(t, entered.C(), "the processor applying the first event")

			_, err := f.store.Append(ctx, behind, events.AnyVersion, events.Event{Data: Renamed{"a", "new"}})
			require.ErrorIs(t, err, projections.ErrStrongCatchingUp, "its partition has the older event to apply")
			f.append(t, other, Renamed{"b", "at once"})
			got, _ := account(t, r, "strong_split", "b")
			require.Equal(t, "at once", got.Name, "the other partition's append is applied at once")
		})
	}
}
