package projections_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/projections"
)

// requireRetried requires an append of ev to stream, already stored as
// first, to be recognised as its retry.
func requireRetried(t *testing.T, s events.Store, stream string, ev events.Event, first events.AppendResult, what string) {
	t.Helper()
	again, err := s.Append(context.Background(), stream, events.NoStream, ev)
	require.NoError(t, err, what)
	require.True(t, again.AlreadyStored, what)
	require.Equal(t, first.Token, again.Token, what)
}

// TestRetryAcrossTheStrongHookIsRecognised: the strong projections' append
// hook marks the events it applies (AppliedMetadataKey), and the retry
// check compared metadata with the mark: a retry made where the hook ran
// for one attempt and not the other (stored before the Runner started,
// stored through it and retried after it stopped) was refused with
// ErrDuplicateEvent instead of reporting the stored append.
func TestRetryAcrossTheStrongHookIsRecognised(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			var reject atomic.Bool
			t.Run("stored before the Runner started", func(t *testing.T) {
				f := b.setup(t)
				ev := events.Event{ID: uuid.NewString(), Data: Deposited{"a", 1}}
				first, err := f.store.Append(context.Background(), "acct-1", events.NoStream, ev)
				require.NoError(t, err)
				r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{strongBalances("sb_retry", &reject)}})
				requireRetried(t, f.store, "acct-1", ev, first, "retried through the hook")
				f.waitHead(t, "sb_retry")
				a, ok := account(t, r, "sb_retry", "a")
				require.True(t, ok)
				require.Equal(t, Account{Balance: 1, Count: 1}, a, "applied once: by the live processor, not by the retry's hook too")
			})
			t.Run("stored through the hook", func(t *testing.T) {
				f := b.setup(t)
				r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{strongBalances("sb_retry", &reject)}})
				require.NoError(t, r.Start(context.Background()))
				ev := events.Event{ID: uuid.NewString(), Data: Deposited{"a", 2}}
				first, err := f.store.Append(context.Background(), "acct-2", events.NoStream, ev)
				require.NoError(t, err)
				stop(t, r)
				requireRetried(t, f.store, "acct-2", ev, first, "retried after the Runner stopped")
				r = f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{strongBalances("sb_retry", &reject)}})
				requireRetried(t, f.store, "acct-2", ev, first, "retried through the hook again")
				f.waitHead(t, "sb_retry")
				a, ok := account(t, r, "sb_retry", "a")
				require.True(t, ok)
				require.Equal(t, Account{Balance: 2, Count: 1}, a, "applied once")
			})
		})
	}
}

// TestRetryThroughAProcessWithoutTheStrongProjection: an append stored by
// a process that runs a strong projection, retried through one that does
// not (an HTTP retry a load balancer sends elsewhere), reports the stored
// append.
func TestRetryThroughAProcessWithoutTheStrongProjection(t *testing.T) {
	t.Parallel()
	f := newPGFixture(t)
	var reject atomic.Bool
	f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{strongBalances("sb_xproc", &reject)}})
	other, err := pgstore.New(t.Context(), f.db.Pool, &pgstore.Config{Schema: f.db.Schema, Registry: newRegistry(), Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = other.Close() })
	ev := events.Event{ID: uuid.NewString(), Data: Deposited{"a", 5}}
	first, err := f.store.Append(context.Background(), "acct-9", events.NoStream, ev)
	require.NoError(t, err)
	requireRetried(t, other, "acct-9", ev, first, "retried through a process that runs no strong projection")
}
