package projections_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/projections"
)

// TestRollingDeployRequestedRebuildGoesToTheNewerBuild: during a rolling
// deploy the newer build (which adds a Withdrawn handler) holds the
// projection and the older stands by. An operator requests a rebuild
// (`converge projections rebuild`). The older build's runner polls first
// (its StatusPollInterval is shorter) but leaves the request to a process
// its live processor's partitions go to: taken by it, the rebuild ran
// with its older handlers, alone in the rebuild's processor group until
// the newer runner's monitor next looked, and switched in a generation
// without the withdrawal.
func TestRollingDeployRequestedRebuildGoesToTheNewerBuild(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			newer := f.start(t, projections.RunnerConfig{
				Projections:        []*projections.Projection{balancesOfBuild(true)},
				StatusPollInterval: 2 * time.Second, // the default
			})
			f.append(t, "acct-a", Deposited{"a", 10})
			f.append(t, "acct-a", Withdrawn{"a", 3})
			f.append(t, "acct-a", Deposited{"a", 1})
			f.waitHead(t, "rolling_balances")
			a, _ := account(t, newer, "rolling_balances", "a")
			require.Equal(t, Account{Balance: 8, Count: 3}, a)

			older := f.start(t, projections.RunnerConfig{
				Projections:        []*projections.Projection{balancesOfBuild(false)},
				StatusPollInterval: 50 * time.Millisecond,
			})
			require.Eventually(t, func() bool {
				o, err1 := older.Status(ctx, "rolling_balances")
				n, err2 := newer.Status(ctx, "rolling_balances")
				return err1 == nil && err2 == nil && n.Consumer.Lease == feed.LeaseHolding && o.Consumer.Lease != feed.LeaseHolding
			}, waitTimeout, 5*time.Millisecond, "the newer build holds the projection")

			q, err := projections.RequestRebuild(ctx, f.source, "rolling_balances")
			require.NoError(t, err)
			done := awaitRequest(t, f, "rolling_balances", q.ID)
			require.Equal(t, projections.RequestDone, done.State, done.Error)
			f.waitHead(t, "rolling_balances")
			a, _ = account(t, newer, "rolling_balances", "a")
			require.Equal(t, Account{Balance: 8, Count: 3}, a,
				"the rebuilt generation applies every event, the withdrawal included (request taken by %s)", done.Owner)
		})
	}
}

// strongBuild is a strong balances projection of a build. Generation 1
// has a bug: it fails on the "bad" account's deposits (the projection
// is stuck on it, and a rebuild is the documented way out). The newer build also
// handles withdrawals; its rebuild fails on them (a passing error,
// retried) until block is closed.
func strongBuild(withdrawals bool, block <-chan struct{}) *projections.Projection {
	p := projections.New("rolling_strong", &projections.Config{Class: consistency.Strong})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
		if e.Account == "bad" && tx.Generation() == 1 {
			return errors.New("generation 1 bug")
		}
		return addToAccount(ctx, tx, e.Account, e.Amount)
	})
	if withdrawals {
		projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Withdrawn) error {
			if tx.Generation() != 1 {
				select {
				case <-block:
				default:
					// A passing failure (a timeout, say): tried again.
					return errors.New("not now")
				}
			}
			return addToAccount(ctx, tx, e.Account, -e.Amount)
		})
	}
	return p
}

// TestRollingDeployOlderBuildSwitchesNoRebuildIn: the newer build
// (withdrawals added) rebuilds a strong projection whose live processor
// keeps failing on a deposit (generation 1's bug). The older build's
// runner, standing by, neither runs the rebuild nor switches it in: its
// switch check judged "no event the projection handles was committed
// after the rebuild's position" by its own, older, types, and switched
// the new generation in before the rebuild applied a withdrawal the
// append hook had put into the old generation's rows (the live processor
// then skipped it as applied, and the active generation never got it).
func TestRollingDeployOlderBuildSwitchesNoRebuildIn(t *testing.T) {
	t.Parallel()
	olderSwitchesNothingIn(t, false)
}

// TestRollingDeployOlderBuildStartedDuringARebuildSwitchesNothingIn: as
// TestRollingDeployOlderBuildSwitchesNoRebuildIn, but the older build's
// process starts (a rollback rolling out, a restarted pod) while the newer
// build's rebuild is in progress. Before its live processor's first
// heartbeat answered, it acted as if alone, and its monitor's first pass
// judged the switch by its older types.
func TestRollingDeployOlderBuildStartedDuringARebuildSwitchesNothingIn(t *testing.T) {
	olderSwitchesNothingIn(t, true)
}

// olderSwitchesNothingIn runs the two tests above: the older build's
// process starts before the newer build rebuilds, or, duringRebuild, once
// the rebuild has passed the bad deposit and retries the withdrawal.
func olderSwitchesNothingIn(t *testing.T, duringRebuild bool) {
	t.Helper()
	ctx := context.Background()
	f := newPGFixture(t)
	block := make(chan struct{})
	release := sync.OnceFunc(func() { close(block) })
	t.Cleanup(release)

	// Appended before any runner: no hook applies it; the live processor
	// is stuck on it.
	bad := f.append(t, "acct-bad", Deposited{"bad", 5})
	newer := f.start(t, projections.RunnerConfig{
		Projections:        []*projections.Projection{strongBuild(true, block)},
		MaxAttempts:        100000,
		RebuildCommitBatch: 1,
	})
	var passes <-chan struct{}
	if !duringRebuild {
		passes = startOlderStrong(t, f)
	}
	// A withdrawal: the newer build's hook refuses it while the live
	// processor has the bad deposit to apply first (before it did, it
	// applied the withdrawal to the live generation at once, and an early
	// switch lost it), so it comes from a process without the projection.
	_, err := newer.Appender().Append(ctx, "acct-w", events.AnyVersion, events.Event{Data: Withdrawn{"w", 3}})
	require.ErrorIs(t, err, projections.ErrStrongCatchingUp)
	bare, err := pgstore.New(ctx, f.db.Pool, &pgstore.Config{Schema: f.db.Schema, Registry: newRegistry(), Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = bare.Close() })
	_, err = bare.Append(ctx, "acct-w", events.AnyVersion, events.Event{Data: Withdrawn{"w", 3}})
	require.NoError(t, err)

	// The fix: rebuild (on the newer build). It applies the bad deposit
	// and retries the withdrawal, while the older runner's monitor makes
	// passes (each would try the switch).
	rebuilt := make(chan error, 1)
	go func() { rebuilt <- newer.Rebuild(ctx, "rolling_strong") }()
	if duringRebuild {
		require.Eventually(t, func() bool {
			pos, err := f.source.Checkpoints().Position(ctx, "rolling_strong@rebuild-2")
			return err == nil && !pos.Before(bad.Token)
		}, waitTimeout, 5*time.Millisecond, "the rebuild did not pass the bad deposit")
		passes = startOlderStrong(t, f)
	}
	for range 5 {
		select {
		case <-passes:
		case <-time.After(waitTimeout):
			t.Fatal("the older runner's monitor made no pass")
		}
	}
	st, err := newer.Status(ctx, "rolling_strong")
	require.NoError(t, err)
	release()
	require.NoError(t, <-rebuilt)
	f.waitHead(t, "rolling_strong")
	a, ok := account(t, newer, "rolling_strong", "w")
	require.True(t, ok, "the withdrawal's row is in the active generation")
	require.Equal(t, Account{Balance: -3, Count: 1}, a)
	require.Equal(t, 1, st.Generation, "the new generation was switched in before its rebuild applied the withdrawal")
}

// startOlderStrong starts the older build's runner of the strong
// projection, on a store object of its own (as in its own process), and
// returns a channel that hears its monitor's passes.
func startOlderStrong(t *testing.T, f *fixture) <-chan struct{} {
	t.Helper()
	s2, err := pgstore.New(t.Context(), f.db.Pool, &pgstore.Config{Schema: f.db.Schema, Registry: newRegistry(), Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s2.Close() })
	older := f.newRunner(t, projections.RunnerConfig{
		Source: s2, Tracker: newTracker(t, s2.Checkpoints(), s2, s2.PushHealthy),
		Projections: []*projections.Projection{strongBuild(false, nil)},
		MaxAttempts: 100000, RebuildCommitBatch: 1, StatusPollInterval: 20 * time.Millisecond,
	})
	passes := hearPasses(older)
	require.NoError(t, older.Start(context.Background()))
	t.Cleanup(func() { stop(t, older) })
	return passes
}

// hearPasses returns a channel that hears the passes of r's monitor. Call
// it before Start.
func hearPasses(r *projections.Runner) <-chan struct{} {
	passes := make(chan struct{}, 1)
	projections.SetReconcileHook(r, func(string) {
		select {
		case passes <- struct{}{}:
		default:
		}
	})
	return passes
}
