package projections_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// leaveNewerRebuild records a rebuild of rolling_balances begun by the
// newer build (withdrawals handled), whose processes then all stop before
// it applied anything: the state row records it, and nobody runs it.
func leaveNewerRebuild(t *testing.T, f *fixture) {
	t.Helper()
	f.append(t, "acct-a", Deposited{"a", 10})
	f.append(t, "acct-a", Withdrawn{"a", 3})
	newer := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{balancesOfBuild(true)}})
	// The rebuild's processor never starts delivering here.
	projections.SetRebuildHook(newer, func(ctx context.Context, _ string) { <-ctx.Done() })
	require.NoError(t, newer.Start(context.Background()))
	ctx, cancel := context.WithCancel(context.Background())
	rebuilt := make(chan error, 1)
	go func() { rebuilt <- newer.Rebuild(ctx, "rolling_balances") }()
	require.Eventually(t, func() bool {
		st, err := newer.Status(context.Background(), "rolling_balances")
		return err == nil && st.Rebuild != nil
	}, waitTimeout, 5*time.Millisecond, "the rebuild was not recorded")
	cancel()
	require.ErrorIs(t, <-rebuilt, context.Canceled)
	stop(t, newer)
}

// startOlderCounting starts the older build's runner (no withdrawals) and
// returns a channel that hears each pass of its monitor.
func startOlderCounting(t *testing.T, f *fixture, grace time.Duration) (*projections.Runner, <-chan struct{}) {
	t.Helper()
	older := f.newRunner(t, projections.RunnerConfig{
		Projections:        []*projections.Projection{balancesOfBuild(false)},
		StatusPollInterval: 10 * time.Millisecond,
	})
	if grace >= 0 {
		projections.SetSupersedeGrace(older, grace)
	}
	passes := hearPasses(older)
	require.NoError(t, older.Start(context.Background()))
	t.Cleanup(func() { stop(t, older) })
	return older, passes
}

// TestRollingDeployRebuildBegunByANewerBuildIsLeftToIt: a rebuild the
// newer build began is left to that build's processes, even by an older
// process that runs alone for a while (its partitions all go to it: it
// started before the newer process's first heartbeat answered, or the
// newer processes restart). Run by the older handlers and judged by their
// types, the rebuild was switched in without the withdrawal. Once a newer
// process is back, it runs the rebuild and switches it in.
func TestRollingDeployRebuildBegunByANewerBuildIsLeftToIt(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			leaveNewerRebuild(t, f)

			older, passes := startOlderCounting(t, f, -1)
			for range 20 {
				select {
				case <-passes:
				case <-time.After(waitTimeout):
					t.Fatal("the older runner's monitor made no pass")
				}
			}
			st, err := older.Status(ctx, "rolling_balances")
			require.NoError(t, err)
			require.Equal(t, 1, st.Generation, "the older build switched in the newer build's rebuild")
			require.NotNil(t, st.Rebuild)
			require.Equal(t, 2, st.Rebuild.Generation)

			newer := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balancesOfBuild(true)}})
			actx, cancel := context.WithTimeout(ctx, waitTimeout)
			defer cancel()
			require.NoError(t, newer.AwaitRebuild(actx, "rolling_balances"))
			requireActive(t, f, newer, 2, Account{Balance: 7, Count: 2}) // the withdrawal applied
		})
	}
}

// TestRollingDeployRebuildOfAGoneBuildIsRestarted: rolled back, the
// older build finds a rebuild the newer build began and left. Once the
// grace has passed with no process of the newer build taking the
// partitions back, the older build restarts the rebuild with its own
// handlers (a new generation), so it is not stuck for good.
func TestRollingDeployRebuildOfAGoneBuildIsRestarted(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			f := b.setup(t)
			leaveNewerRebuild(t, f)

			older, _ := startOlderCounting(t, f, 0)
			require.NoError(t, older.AwaitRebuild(ctx, "rolling_balances"))
			// Restarted as a new generation, by the older build's handlers:
			// no withdrawal.
			requireActive(t, f, older, 3, Account{Balance: 10, Count: 1})
		})
	}
}

// poisonedBalances is the older build's balances projection (no
// withdrawals) with a bug its rebuilds hit: a deposit to "poison" fails in
// every generation but the first.
func poisonedBalances() *projections.Projection {
	p := projections.New("rolling_balances", nil)
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
		if e.Account == "poison" && tx.Generation() != 1 {
			return errors.New("rebuild bug")
		}
		return addToAccount(ctx, tx, e.Account, e.Amount)
	})
	return p
}

// TestRollingDeployRebuildBegunByAnOlderBuildIsRestartedByTheNewer: the
// older build rebuilds, replaying the feed by its own types (it skips a
// withdrawal) until it halts on an event past it. The newer build,
// which handles withdrawals, took the rebuild over where it stood and
// switched in a generation without the withdrawal (or, as here, halted
// with it). It restarts the rebuild with its own handlers instead.
func TestRollingDeployRebuildBegunByAnOlderBuildIsRestartedByTheNewer(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			f := b.setup(t)
			appendPoisoned(t, f)

			older := f.newRunner(t, projections.RunnerConfig{
				Projections: []*projections.Projection{poisonedBalances()},
				MaxAttempts: 2,
			})
			require.NoError(t, older.Start(context.Background()))
			var halted *projections.HaltedError
			require.ErrorAs(t, older.Rebuild(ctx, "rolling_balances"), &halted)
			require.Equal(t, 2, halted.Generation)
			stop(t, older)

			newer := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balancesOfBuild(true)}})
			require.NoError(t, newer.AwaitRebuild(ctx, "rolling_balances"))
			// Restarted as a new generation, the withdrawal applied.
			requireActive(t, f, newer, 3, Account{Balance: 7, Count: 2})
			p, ok := account(t, newer, "rolling_balances", "poison")
			require.True(t, ok)
			require.Equal(t, Account{Balance: 1, Count: 1}, p)
		})
	}
}

// requireActive requires generation gen of rolling_balances active, with
// no rebuild in progress, and account "a" in it as want.
func requireActive(t *testing.T, f *fixture, r *projections.Runner, gen int, want Account) {
	t.Helper()
	st, err := r.Status(context.Background(), "rolling_balances")
	require.NoError(t, err)
	require.Equal(t, gen, st.Generation)
	require.Nil(t, st.Rebuild)
	f.waitHead(t, "rolling_balances")
	a, ok := account(t, r, "rolling_balances", "a")
	require.True(t, ok)
	require.Equal(t, want, a)
}

// appendPoisoned appends a deposit and a withdrawal to account "a", then
// a deposit to "poison", which the rebuilds of some builds fail on.
func appendPoisoned(t *testing.T, f *fixture) {
	t.Helper()
	f.append(t, "acct-a", Deposited{"a", 10})
	f.append(t, "acct-a", Withdrawn{"a", 3})
	f.append(t, "acct-p", Deposited{"poison", 1})
}
