package projections_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// TestResetDropsDeadLettersItReplays: a Reset to before a dead-lettered
// event applies it again in order (once the handler is fixed), so its dead
// letter is moot and goes: replayed afterwards, it would apply the event
// again after later ones, and the row would step back for good.
func TestResetDropsDeadLettersItReplays(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			var broken atomic.Bool
			broken.Store(true)
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{latestNames("lettered", &broken)},
				MaxAttempts: 1, OnFailure: projections.DeadLetterOnFailure,
			})
			before := f.append(t, "acct-a", Renamed{"a", "before"})
			f.append(t, "acct-a", Renamed{"a", "bad"})
			last := f.append(t, "acct-a", Renamed{"a", "last"})
			f.awaitStored(t, "lettered", last.Token)
			dls, err := r.DeadLetters(ctx, "lettered")
			require.NoError(t, err)
			require.Len(t, dls, 1)
			key := "lettered/" + dls[0].EventID

			broken.Store(false)
			require.NoError(t, r.Reset(ctx, "lettered", before.Token))
			f.awaitStored(t, "lettered", last.Token)
			dls, err = r.DeadLetters(ctx, "lettered")
			require.NoError(t, err)
			require.Empty(t, dls, "the reset applied the event again: its dead letter is moot")
			_, err = feed.RequestReplay(ctx, f.source.Rows(), key)
			require.ErrorIs(t, err, feed.ErrNoDeadLetter)
			requireRows(t, r.View("lettered").Table("names"), map[string]string{"a": "last"})
		})
	}
}

// TestResetAfterAPartitionCountChangeAppliesEverything: a projection split
// into more partitions carries the old partitions' positions, behind which
// its partitions skip what the old ones handled. A Reset to the start of
// the feed applies every event again all the same.
func TestResetAfterAPartitionCountChangeAppliesEverything(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			var calls atomic.Int64
			proj := func(partitions int) *projections.Projection {
				p := projections.New("resplit", &projections.Config{Partitions: partitions})
				projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Renamed) error {
					calls.Add(1)
					return tx.Table("names").Put(ctx, e.Account, e.Name)
				})
				return p
			}
			var last events.AppendResult
			for i := range 8 {
				last = f.append(t, fmt.Sprint("acct-", i), Renamed{fmt.Sprint(i), "one"})
			}
			one := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{proj(1)}})
			require.NoError(t, one.Start(ctx))
			f.awaitStored(t, "resplit", last.Token)
			stop(t, one)
			for i := range 8 {
				last = f.append(t, fmt.Sprint("acct-", i), Renamed{fmt.Sprint(i), "two"})
			}
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{proj(2)}})
			for i := range 2 {
				f.awaitStored(t, feed.PartitionName("resplit", i, 2), last.Token)
			}
			require.EqualValues(t, 16, calls.Load(), "every event applied once across the change")

			calls.Store(0)
			require.NoError(t, r.Reset(ctx, "resplit", events.Token{}))
			require.Eventually(t, func() bool { return calls.Load() >= 16 }, waitTimeout, 5*time.Millisecond,
				"the reset applied %d of the 16 events again", calls.Load())
		})
	}
}
