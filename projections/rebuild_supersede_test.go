package projections_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// TestRebuildSwitchedInIsNotBlamedForALaterRebuild: Rebuild's own
// generation is switched in; while the old generation is still being
// dropped, another rebuild begins and halts. The first Rebuild returns
// nil once its old generation is dropped: it took any later rebuild for
// one that superseded its own, and returned that one's *HaltedError.
func TestRebuildSwitchedInIsNotBlamedForALaterRebuild(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			p := projections.New("twice", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				if e.Account == "poison" && tx.Generation() >= 3 {
					return errors.New("bug of the third generation")
				}
				return addToAccount(ctx, tx, e.Account, e.Amount)
			})
			r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{p}, MaxAttempts: 2})
			dropping, release := make(chan struct{}), make(chan struct{})
			dropped := false
			projections.SetDropHook(r, func(_ string, gen, _ int) {
				if gen == 1 && !dropped {
					dropped = true
					close(dropping)
					<-release
				}
			})
			waits := make(chan int, 1)
			projections.SetAwaitHook(r, func(gen int) {
				select {
				case waits <- gen:
				default:
				}
			})
			require.NoError(t, r.Start(ctx))
			t.Cleanup(func() { stop(t, r) })
			f.append(t, "s-a", Deposited{"a", 1})
			f.append(t, "s-p", Deposited{"poison", 2})
			f.waitHead(t, "twice")

			first := make(chan error, 1)
			go func() { first <- r.Rebuild(ctx, "twice") }()
			await(t, dropping, "the drop of generation 1 after the switch")
			// A second rebuild, begun while generation 1 is still dropped,
			// halts on the third generation's bug.
			var halted *projections.HaltedError
			require.ErrorAs(t, r.Rebuild(ctx, "twice"), &halted)
			require.Equal(t, 3, halted.Generation)

			// The first Rebuild's wait makes passes while the drop is held.
			for n := 0; n < 3; {
				select {
				case gen := <-waits:
					if gen == 2 {
						n++
					}
				case err := <-first:
					t.Fatalf("the first Rebuild returned before its old generation was dropped: %v", err)
				case <-time.After(waitTimeout):
					t.Fatal("the first Rebuild's wait made no pass")
				}
			}
			close(release)
			select {
			case err := <-first:
				require.NoError(t, err)
			case <-time.After(waitTimeout):
				t.Fatal("the first Rebuild did not return")
			}
		})
	}
}

// TestRequestFollowsTheSupersedingGeneration: a requested rebuild the
// older build began (which halted on its bug) is superseded by the newer
// build as generation 3. The request named generation 2 to the end ("done:
// generation 2 is active" while 3 was), and while 3 was built its progress
// read generation 2's processor, whose halt was never deleted.
func TestRequestFollowsTheSupersedingGeneration(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			f := b.setup(t)
			appendPoisoned(t, f)

			older := f.newRunner(t, projections.RunnerConfig{
				Projections:        []*projections.Projection{poisonedBalances()},
				MaxAttempts:        2,
				StatusPollInterval: 20 * time.Millisecond,
			})
			require.NoError(t, older.Start(context.Background()))
			q, err := projections.RequestRebuild(ctx, f.source, "rolling_balances")
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				st, err := older.Status(ctx, "rolling_balances")
				return err == nil && st.Rebuild != nil && st.Rebuild.State == projections.StateHalted
			}, waitTimeout, 5*time.Millisecond, "the older build's rebuild did not halt")
			stop(t, older)

			newer := f.start(t, projections.RunnerConfig{
				Projections:        []*projections.Projection{balancesOfBuild(true)},
				StatusPollInterval: 20 * time.Millisecond,
			})
			done := awaitRequest(t, f, "rolling_balances", q.ID)
			require.Equal(t, projections.RequestDone, done.State, done.Error)
			require.Equal(t, 3, done.Generation, "the request names the generation switched in")
			requireActive(t, f, newer, 3, Account{Balance: 7, Count: 2})
			_, halted, err := f.source.Rows().Get(ctx, feed.RuntimeNamespace, feed.HaltsTable, "rolling_balances@rebuild-2", feed.LockNone)
			require.NoError(t, err)
			require.False(t, halted, "the superseded generation's halt is left behind")
		})
	}
}

// TestSupersededRebuildCheckpointIsForgotten: rolled back, the older build
// restarts a rebuild the gone newer build began and moved a checkpoint
// for. The superseded rebuild's checkpoint was left behind for good (a
// checkpoint nobody moves lags forever): the sweep ran at the monitor's
// first pass, while generation 2 was still the one building, and never
// again.
func TestSupersededRebuildCheckpointIsForgotten(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			f := b.setup(t)
			appendPoisoned(t, f)

			// The newer build, whose rebuild halts on a bug of its own.
			newerP := projections.New("rolling_balances", nil)
			projections.On(newerP, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				if e.Account == "poison" && tx.Generation() != 1 {
					return errors.New("rebuild bug")
				}
				return addToAccount(ctx, tx, e.Account, e.Amount)
			})
			projections.On(newerP, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Withdrawn) error {
				return addToAccount(ctx, tx, e.Account, -e.Amount)
			})
			newer := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{newerP}, MaxAttempts: 2})
			require.NoError(t, newer.Start(context.Background()))
			var halted *projections.HaltedError
			require.ErrorAs(t, newer.Rebuild(ctx, "rolling_balances"), &halted)
			require.Equal(t, 2, halted.Generation)
			stop(t, newer)
			require.Contains(t, consumerNames(t, f), "rolling_balances@rebuild-2")

			// Rolled back: the older build alone, with no grace.
			// Nothing waits for the rebuild here (a wait that follows the
			// supersede deletes what it waited for itself).
			older, passes := startOlderCounting(t, f, 0)
			require.Eventually(t, func() bool {
				st, err := older.Status(ctx, "rolling_balances")
				return err == nil && st.Generation == 3 && st.Rebuild == nil
			}, waitTimeout, 5*time.Millisecond, "the older build did not restart the rebuild and switch it in")
			requireActive(t, f, older, 3, Account{Balance: 10, Count: 1})
			for range 2 {
				await(t, passes, "a monitor pass")
			}
			require.NotContains(t, consumerNames(t, f), "rolling_balances@rebuild-2",
				"the superseded rebuild's checkpoint is left behind")
		})
	}
}

// consumerNames lists the checkpoints of rolling_balances and its
// rebuilds.
func consumerNames(t *testing.T, f *fixture) []string {
	t.Helper()
	in, ok := f.source.(feed.Inspector)
	require.True(t, ok)
	cs, err := in.Consumers(context.Background())
	require.NoError(t, err)
	var out []string
	for _, c := range cs {
		if strings.HasPrefix(c.Name, "rolling_balances") {
			out = append(out, c.Name)
		}
	}
	return out
}
