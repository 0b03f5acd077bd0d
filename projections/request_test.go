package projections_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// awaitRequest waits until name's request id is finished and returns it.
func awaitRequest(t *testing.T, f *fixture, name, id string) projections.Request {
	t.Helper()
	var q projections.Request
	require.Eventually(t, func() bool {
		var ok bool
		var err error
		q, ok, err = projections.ReadRequest(context.Background(), f.source.Rows(), name)
		return err == nil && ok && q.ID == id && q.Finished()
	}, waitTimeout, 10*time.Millisecond)
	return q
}

// A rebuild requested through the rows alone (as `converge projections
// rebuild` does, without the handlers) waits for a runner, which carries
// it out; a second request meanwhile is refused.
func TestRequestedRebuildIsCarriedOutByARunner(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			cfg := projections.RunnerConfig{Projections: []*projections.Projection{balances("req_balances", nil)}}
			r := f.start(t, cfg)
			for i := range 6 {
				f.append(t, "acct-"+accountName(i%3), Deposited{accountName(i % 3), i + 1})
			}
			f.waitHead(t, "req_balances")
			before := snapshot(t, r, "req_balances", "accounts")
			stop(t, r)

			_, err := projections.RequestRebuild(ctx, f.source, "nosuch")
			require.ErrorIs(t, err, projections.ErrNotRegistered)

			q, err := projections.RequestRebuild(ctx, f.source, "req_balances")
			require.NoError(t, err)
			require.Equal(t, projections.RequestPending, q.State)
			_, err = projections.RequestReset(ctx, f.source, "req_balances", events.Token{})
			require.ErrorIs(t, err, projections.ErrRequestPending)

			// Durable: a runner started later takes it.
			r = f.start(t, cfg)
			done := awaitRequest(t, f, "req_balances", q.ID)
			require.Equal(t, projections.RequestDone, done.State, done.Error)
			require.Equal(t, 2, done.Generation)
			require.NotEmpty(t, done.Owner)
			st, err := r.Status(ctx, "req_balances")
			require.NoError(t, err)
			require.Equal(t, 2, st.Generation)
			require.Equal(t, before, snapshot(t, r, "req_balances", "accounts"), "each event applied once in the new generation")

			// A finished request can be followed by a new one.
			q2, err := projections.RequestRebuild(ctx, f.source, "req_balances")
			require.NoError(t, err)
			require.NotEqual(t, q.ID, q2.ID)
			done = awaitRequest(t, f, "req_balances", q2.ID)
			require.Equal(t, projections.RequestDone, done.State, done.Error)
			require.Equal(t, 3, done.Generation)
		})
	}
}

// A requested reset replays the events after its token through the
// running runner.
func TestRequestedResetIsCarriedOutByARunner(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			calls := newCounter()
			p := projections.New("req_latest", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Renamed) error {
				calls.add()
				return tx.Table("names").Put(ctx, e.Account, e.Name)
			})
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})
			var toks []events.Token
			for i := range 4 {
				toks = append(toks, f.append(t, "acct-"+accountName(i%2), Renamed{accountName(i % 2), fmt.Sprint("n-", i)}).Token)
			}
			f.waitHead(t, "req_latest")
			before := snapshot(t, r, "req_latest", "names")

			q, err := projections.RequestReset(ctx, f.source, "req_latest", toks[1])
			require.NoError(t, err)
			done := awaitRequest(t, f, "req_latest", q.ID)
			require.Equal(t, projections.RequestDone, done.State, done.Error)
			// Awaited by the handler's calls and the stored checkpoint: a
			// wait on reported commits could return on a late report of the
			// first pass's last commit (the tracker also hears the store's
			// own notifications).
			require.Eventually(t, func() bool { return calls.load() >= 6 }, waitTimeout, 5*time.Millisecond,
				"the two events after the token are applied again")
			f.awaitStored(t, "req_latest", toks[3])
			require.Equal(t, 6, calls.load(), "the two events after the token were applied again, once")
			require.Equal(t, before, snapshot(t, r, "req_latest", "names"))
		})
	}
}

// A projection's dead letter replayed on request lands in the active
// generation once its handler is fixed.
func TestRequestedReplayOfProjectionDeadLetter(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var fixed atomic.Bool
			p := projections.New("req_letters", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				if e.Account == "poison" && !fixed.Load() {
					return errors.New("poison pill")
				}
				return tx.Table("t").Put(ctx, e.Account, e.Amount)
			})
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{p},
				MaxAttempts: 1,
				OnFailure:   projections.DeadLetterOnFailure,
			})
			poison := f.append(t, "s-1", Deposited{"poison", 2})
			f.append(t, "s-2", Deposited{"b", 3})
			f.waitHead(t, "req_letters")
			_, ok, err := projections.Get[int](ctx, r.View("req_letters").Table("t"), "poison")
			require.NoError(t, err)
			require.False(t, ok)

			fixed.Store(true)
			key := "req_letters/" + poison.EventIDs[0]
			_, err = feed.RequestReplay(ctx, f.source.Rows(), key)
			require.NoError(t, err)
			require.Eventually(t, func() bool {
				_, ok, err := feed.ReadReplay(ctx, f.source.Rows(), key)
				return err == nil && !ok
			}, waitTimeout, 10*time.Millisecond)
			got, ok, err := projections.Get[int](ctx, r.View("req_letters").Table("t"), "poison")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, 2, got)
			dls, err := r.DeadLetters(ctx, "req_letters")
			require.NoError(t, err)
			require.Empty(t, dls)
		})
	}
}

// resetAcquireFailures is a source whose checkpoints refuse the leases a
// reset takes (its owner names it) while fail is above zero, as a store
// that does not answer for a moment; failed counts the refusals.
type resetAcquireFailures struct {
	feed.Source
	fail, failed atomic.Int64
}

func (s *resetAcquireFailures) Checkpoints() feed.CheckpointStore {
	return resetAcquireCheckpoints{s.Source.Checkpoints(), s}
}

type resetAcquireCheckpoints struct {
	feed.CheckpointStore
	s *resetAcquireFailures
}

func (c resetAcquireCheckpoints) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (feed.Lease, error) {
	if strings.HasPrefix(owner, "projections-reset-") && c.s.fail.Add(-1) >= 0 {
		c.s.failed.Add(1)
		return feed.Lease{}, errors.New("connection refused (injected)")
	}
	return c.CheckpointStore.Acquire(ctx, name, owner, ttl)
}

// TestRequestedResetSurvivesAFailingStore: a requested reset that fails
// because the store did not answer is not marked failed (the operator's
// `--wait` would fail, and nothing would make it again): it stays pending,
// and a later pass makes it.
func TestRequestedResetSurvivesAFailingStore(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			p := projections.New("req_flaky", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Renamed) error {
				return tx.Table("names").Put(ctx, e.Account, e.Name)
			})
			flaky := &resetAcquireFailures{Source: f.source}
			flaky.fail.Store(2)
			f.start(t, projections.RunnerConfig{Source: flaky, Store: f.store, Projections: []*projections.Projection{p}})
			first := f.append(t, "acct-a", Renamed{"a", "n-0"}).Token
			f.append(t, "acct-a", Renamed{"a", "n-1"})
			f.waitHead(t, "req_flaky")

			q, err := projections.RequestReset(ctx, f.source, "req_flaky", first)
			require.NoError(t, err)
			done := awaitRequest(t, f, "req_flaky", q.ID)
			require.Equal(t, projections.RequestDone, done.State, done.Error)
			require.EqualValues(t, 2, flaky.failed.Load(), "every injected failure was met")
		})
	}
}
