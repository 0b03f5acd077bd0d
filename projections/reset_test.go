package projections_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// latestNames is an upsert-style projection (Reset's use): the latest
// name of each account. While broken is set it fails on the name "bad".
func latestNames(name string, broken *atomic.Bool) *projections.Projection {
	p := projections.New(name, nil)
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Renamed) error {
		if e.Name == "bad" && broken.Load() {
			return errors.New("cannot take the name bad")
		}
		return tx.Table("names").Put(ctx, e.Account, e.Name)
	})
	return p
}

// TestResetResumesAHaltedProjection: a projection halted on an event is
// resumed by a Reset to before it: the event is applied (once fixed), and
// so is everything after it.
func TestResetResumesAHaltedProjection(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			var broken atomic.Bool
			broken.Store(true)
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{latestNames("names", &broken)}, MaxAttempts: 1})
			first := f.append(t, "acct-a", Renamed{"a", "ada"})
			bad := f.append(t, "acct-b", Renamed{"b", "bad"})
			f.append(t, "acct-a", Renamed{"a", "ann"})
			require.Eventually(t, func() bool {
				st, err := r.Status(ctx, "names")
				return err == nil && st.State == projections.StateHalted
			}, waitTimeout, 5*time.Millisecond)
			st, err := r.Status(ctx, "names")
			require.NoError(t, err)
			require.Equal(t, bad.EventIDs[0], st.HaltedEventID)

			broken.Store(false)
			require.NoError(t, r.Reset(ctx, "names", first.Token))
			f.waitHead(t, "names")
			st, err = r.Status(ctx, "names")
			require.NoError(t, err)
			require.Equal(t, projections.StateRunning, st.State, "the reset resumed it")
			requireRows(t, r.View("names").Table("names"), map[string]string{"a": "ann", "b": "bad"})
		})
	}
}

// TestResetRefusesWhileAnotherProcessHoldsTheProjection: a Reset through
// a runner whose processor does not hold the projection, another process
// holding its lease, fails with feed.ErrLeaseHeld and changes nothing:
// the holder goes on from where it was.
func TestResetRefusesWhileAnotherProcessHoldsTheProjection(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			var broken atomic.Bool
			// Partitions go to the members in sorted order, and members
			// are named after their owners: the holder's sorts first, so
			// it keeps the projection once the other joins.
			cfg := func(owner string) projections.RunnerConfig {
				return projections.RunnerConfig{
					Projections: []*projections.Projection{latestNames("held", &broken)},
					Subscriber:  &feed.SubscriberConfig{LeaseTTL: time.Minute, Owner: owner},
				}
			}
			holding := func(r *projections.Runner) bool {
				st, err := r.Status(ctx, "held")
				require.NoError(t, err)
				return st.Consumer.Lease == feed.LeaseHolding
			}
			holder := f.start(t, cfg("a-holder"))
			require.Eventually(t, func() bool { return holding(holder) }, waitTimeout, 5*time.Millisecond, "the first process takes the projection")
			other := f.start(t, cfg("b-other"))
			first := f.append(t, "acct-a", Renamed{"a", "ada"})
			f.waitFor(t, first.Token, "held")

			require.ErrorIs(t, other.Reset(ctx, "held", events.Token{}), feed.ErrLeaseHeld)
			pos, err := f.source.Checkpoints().Position(ctx, "held")
			require.NoError(t, err)
			require.Equal(t, first.Token, pos, "the refused reset moved nothing")

			next := f.append(t, "acct-a", Renamed{"a", "ann"})
			f.waitFor(t, next.Token, "held")
			require.True(t, holding(holder), "the holder goes on")
			got, ok, err := projections.Get[string](ctx, holder.View("held").Table("names"), "a")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, "ann", got)
		})
	}
}

// requireRows checks that table holds want's rows, each with its value.
func requireRows[T any](t *testing.T, table projections.Reader, want map[string]T) {
	t.Helper()
	for key, v := range want {
		got, ok, err := projections.Get[T](context.Background(), table, key)
		require.NoError(t, err)
		require.True(t, ok, key)
		require.Equal(t, v, got, key)
	}
}
