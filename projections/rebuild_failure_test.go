package projections_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// totals keeps each account's deposits; its handler fails in the
// rebuild's generation on the account "poison" while broken is set, and
// waits on gate (when not nil) there before applying anything.
func totals(name string, broken *atomic.Bool, gate <-chan struct{}, started chan<- struct{}) *projections.Projection {
	p := projections.New(name, nil)
	var once atomic.Bool
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
		if tx.Generation() > 1 {
			if gate != nil {
				if once.CompareAndSwap(false, true) {
					close(started)
				}
				<-gate
			}
			if e.Account == "poison" && broken.Load() {
				return errors.New("cannot total poison")
			}
		}
		t := tx.Table("totals")
		n, _, err := projections.Get[int](ctx, t, e.Account)
		if err != nil {
			return err
		}
		return t.Put(ctx, e.Account, n+e.Amount)
	})
	return p
}

// TestFailingRebuildHaltsThenResumes: a rebuild whose handler fails halts
// and Rebuild says so with a *HaltedError naming the event, under either
// failure policy (a rebuild that dead-lettered the event would switch in
// without it); the live generation keeps serving and applying meanwhile.
// After the fix, Resume lets the rebuild carry on, and AwaitRebuild waits
// for its switch; the new generation then holds every deposit once.
func TestFailingRebuildHaltsThenResumes(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		for _, policy := range []projections.FailurePolicy{projections.HaltOnFailure, projections.DeadLetterOnFailure} {
			t.Run(b.name+"/"+string(policy), func(t *testing.T) {
				t.Parallel()
				testFailingRebuildHaltsThenResumes(t, b, policy)
			})
		}
	}
}

func testFailingRebuildHaltsThenResumes(t *testing.T, b backendCase, policy projections.FailurePolicy) {
	t.Helper()
	ctx := context.Background()
	f := b.setup(t)
	var broken atomic.Bool
	broken.Store(true)
	r := f.start(t, projections.RunnerConfig{
		Projections: []*projections.Projection{totals("totals", &broken, nil, nil)},
		MaxAttempts: 1,
		OnFailure:   policy,
	})
	f.append(t, "account-a", Deposited{"a", 5})
	poison := f.append(t, "account-p", Deposited{"poison", 7})
	last := f.append(t, "account-a", Deposited{"a", 1})
	f.waitFor(t, last.Token, "totals")

	err := r.Rebuild(ctx, "totals")
	var halted *projections.HaltedError
	require.ErrorAs(t, err, &halted)
	require.Equal(t, 2, halted.Generation)
	require.Equal(t, poison.EventIDs[0], halted.EventID)
	require.Contains(t, halted.Reason, "cannot total poison")
	st, err := r.Status(ctx, "totals")
	require.NoError(t, err)
	require.Equal(t, 1, st.Generation, "readers stay on the live generation")
	require.Equal(t, projections.StateRunning, st.State)
	require.NotNil(t, st.Rebuild)
	require.Equal(t, projections.StateHalted, st.Rebuild.State)

	more := f.append(t, "account-a", Deposited{"a", 10})
	f.waitFor(t, more.Token, "totals")
	n, ok, err := projections.Get[int](ctx, r.View("totals").Table("totals"), "a")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 16, n, "the live generation applies on while the rebuild is halted")

	broken.Store(false)
	require.ErrorIs(t, r.Rebuild(ctx, "totals"), projections.ErrRebuildInProgress, "one rebuild at a time")
	require.ErrorAs(t, r.AwaitRebuild(ctx, "totals"), &halted, "still halted until Resume")
	require.NoError(t, r.Resume(ctx, "totals"))
	require.NoError(t, r.AwaitRebuild(ctx, "totals"), "the resumed rebuild switches")
	st, err = r.Status(ctx, "totals")
	require.NoError(t, err)
	require.Equal(t, 2, st.Generation)
	require.Nil(t, st.Rebuild)
	requireRows(t, r.View("totals").Table("totals"), map[string]int{"a": 16, "poison": 7})
	dls, err := r.DeadLetters(ctx, "totals")
	require.NoError(t, err)
	require.Empty(t, dls, "nothing was dead-lettered")
}

// TestRebuildCarriesOnAfterItsContextEnds: Rebuild returns ctx's error
// when ctx ends first, and the rebuild carries on without it and
// switches.
func TestRebuildCarriesOnAfterItsContextEnds(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			gate, started := make(chan struct{}), make(chan struct{})
			var broken atomic.Bool
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{totals("later", &broken, gate, started)}})
			last := f.append(t, "account-a", Deposited{"a", 3})
			f.waitFor(t, last.Token, "later")

			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- r.Rebuild(ctx, "later") }()
			<-started
			cancel()
			require.ErrorIs(t, <-done, context.Canceled)
			close(gate)
			require.Eventually(t, func() bool {
				st, err := r.Status(context.Background(), "later")
				return err == nil && st.Generation == 2 && st.Rebuild == nil
			}, 30*time.Second, 5*time.Millisecond, "the rebuild carried on and switched")
			n, ok, err := projections.Get[int](context.Background(), r.View("later").Table("totals"), "a")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, 3, n)
			require.NoError(t, r.AwaitRebuild(context.Background(), "later"), "nothing in progress: at once")
		})
	}
}
