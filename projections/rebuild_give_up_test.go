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

// failingInGen1 fails on "poison" in generation 1 only (the old
// generation's rows make the handler fail; a rebuild is the fix), and
// closes third at its third failure.
func failingInGen1(name string, third chan<- struct{}) *projections.Projection {
	var failures atomic.Int32
	p := projections.New(name, nil)
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
		if e.Account == "poison" && tx.Generation() == 1 {
			if failures.Add(1) == 3 {
				close(third)
			}
			return errors.New("bad row in generation 1")
		}
		return addToAccount(ctx, tx, e.Account, e.Amount)
	})
	return p
}

// giveUpAfterSwitch runs a live processor that fails on an event of the
// old generation MaxAttempts (3) times, and a rebuild switched in during
// its backoff before it gives up: its give-up reads no state row, so it
// halts on, or dead-letters, the event after the switch cleared the old
// generation's halts and dead letters, although the new generation
// applied it. It returns the runner and its fixture once that happened
// (gaveUp heard it).
func giveUpAfterSwitch(t *testing.T, b backendCase, name string, cfg projections.RunnerConfig, gaveUp <-chan struct{}) (*fixture, *projections.Runner) {
	t.Helper()
	ctx := context.Background()
	f := b.setup(t)
	third := make(chan struct{})
	cfg.Projections = []*projections.Projection{failingInGen1(name, third)}
	cfg.MaxAttempts = 3
	cfg.BackoffMin, cfg.BackoffMax = time.Second, time.Second
	r := f.start(t, cfg)
	// The poison first, so that every failure is at the head of its unit
	// and counts.
	f.append(t, "s-p", Deposited{"poison", 2})
	f.append(t, "s-a", Deposited{"a", 1})
	await(t, third, "the third failure")
	require.NoError(t, r.Rebuild(ctx, name))
	st, err := r.Status(ctx, name)
	require.NoError(t, err)
	require.Equal(t, 2, st.Generation)
	await(t, gaveUp, "the give-up after the switch")
	return f, r
}

// TestRebuildSwitchedInBeforeAGiveUpLeavesNoHalt: the halt after the
// switch stopped the projection for good (nothing appended later was
// applied, every wait stale) until someone called Resume. It is cleared:
// the projection applies what comes next.
func TestRebuildSwitchedInBeforeAGiveUpLeavesNoHalt(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			halted := make(chan struct{}, 1)
			f, r := giveUpAfterSwitch(t, b, "retrying", projections.RunnerConfig{
				OnHalt: func(*projections.HaltedError) {
					select {
					case halted <- struct{}{}:
					default:
					}
				},
			}, halted)
			after := f.append(t, "s-a", Deposited{"a", 10})
			wctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			ws, err := f.tracker.Wait(wctx, after.Token, "retrying")
			require.NoError(t, err)
			require.False(t, ws.Stale, "the live processor applies nothing appended after the switch")
			st, err := r.Status(context.Background(), "retrying")
			require.NoError(t, err)
			require.Equal(t, projections.StateRunning, st.State)
			a, ok := account(t, r, "retrying", "a")
			require.True(t, ok)
			require.Equal(t, Account{Balance: 11, Count: 2}, a)
		})
	}
}

// TestRebuildSwitchedInBeforeAGiveUpLeavesNoDeadLetter: under
// DeadLetterOnFailure the same left a dead letter listed (naming the new
// generation) of an event the new generation applied; a replay of it
// would do nothing. It is cleared.
func TestRebuildSwitchedInBeforeAGiveUpLeavesNoDeadLetter(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			lettered := make(chan struct{}, 1)
			_, r := giveUpAfterSwitch(t, b, "retrying_dl", projections.RunnerConfig{
				OnFailure: projections.DeadLetterOnFailure,
				OnDeadLetter: func(projections.DeadLetter) {
					select {
					case lettered <- struct{}{}:
					default:
					}
				},
			}, lettered)
			ctx := context.Background()
			require.Eventually(t, func() bool {
				dls, err := r.DeadLetters(ctx, "retrying_dl")
				return err == nil && len(dls) == 0
			}, waitTimeout, 10*time.Millisecond, "a dead letter of an event the new generation applied is left")
			p, ok := account(t, r, "retrying_dl", "poison")
			require.True(t, ok)
			require.Equal(t, Account{Balance: 2, Count: 1}, p)
		})
	}
}
