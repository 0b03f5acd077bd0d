package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// TestNackDiscardsHandlerAppends: a handler appends through its unit; a
// failed attempt rolls those events back with its rows, on both stores, so
// the event retried appends them once.
func TestNackDiscardsHandlerAppends(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var attempts atomic.Int32
			p := projections.New("auditing", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				u, ok := events.UnitFromContext(ctx)
				if !ok {
					return errors.New("no unit in the handler's context")
				}
				n := attempts.Add(1)
				if _, err := u.Append(ctx, "audit-"+e.Account, events.AnyVersion, events.Event{Data: Noise{N: int(n)}}); err != nil {
					return err
				}
				if n == 1 {
					return errors.New("fails after appending")
				}
				return tx.Table("t").Put(ctx, e.Account, e.Amount)
			})
			f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})
			res := f.append(t, "acct-1", Deposited{"a", 1})
			f.waitFor(t, res.Token, "auditing")

			require.EqualValues(t, 2, attempts.Load())
			audit, err := f.store.ReadStream(ctx, "audit-a", 1, 10)
			require.NoError(t, err)
			require.Len(t, audit, 1, "the failed attempt's append was discarded")
			n, err := events.DecodeAs[Noise](f.store.Registry(), audit[0])
			require.NoError(t, err)
			require.Equal(t, 2, n.N, "the event of the attempt that committed")
		})
	}
}

// TestTokenReachedOnlyWhenEverythingBeforeIsApplied: a token is reported
// reached only when every event up to it is applied, including one
// appended before the projection ran (so without its hook) that its
// processor has not applied yet; a strong append meanwhile is refused. The old Appender advanced the Tracker to its own append's token and
// made a wait on the earlier event report fresh while the event was
// missing.
func TestTokenReachedOnlyWhenEverythingBeforeIsApplied(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			e1 := f.append(t, "acct-1", Deposited{"a", 1}) // before the runner: no hook
			held, release := newOnce(), make(chan struct{})
			hold := func(h message.HandlerFunc) message.HandlerFunc {
				return func(msg *message.Message) ([]*message.Message, error) {
					if env, _ := feed.EnvelopeFromMessage(msg); env.ID == e1.EventIDs[0] {
						held.fire()
						select {
						case <-release:
						case <-msg.Context().Done():
							return nil, msg.Context().Err()
						}
					}
					return h(msg)
				}
			}
			var reject atomic.Bool
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{strongBalances("strong_seq", &reject)},
				Middleware:  []message.HandlerMiddleware{hold},
			})
			await(t, held.C(), "the processor to reach the first event")

			_, err := r.Appender().Append(ctx, "acct-2", events.AnyVersion, events.Event{Data: Deposited{"b", 2}})
			require.ErrorIs(t, err, projections.ErrStrongCatchingUp, "the processor has an earlier event to apply first")
			_, ok := account(t, r, "strong_seq", "a")
			require.False(t, ok, "the earlier event is not applied yet")

			wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
			st, err := f.tracker.Wait(wctx, e1.Token, "strong_seq")
			cancel()
			require.NoError(t, err)
			require.True(t, st.Stale, "a token of an unapplied event is not reached: %+v", st)

			close(release)
			f.waitFor(t, e1.Token, "strong_seq")
			e2, err := r.Appender().Append(ctx, "acct-2", events.AnyVersion, events.Event{Data: Deposited{"b", 2}})
			require.NoError(t, err, "caught up: the append is applied with it")
			f.waitFor(t, e2.Token, "strong_seq")
			a, ok := account(t, r, "strong_seq", "a")
			require.True(t, ok)
			require.Equal(t, Account{Balance: 1, Count: 1}, a)
			bAcct, _ := account(t, r, "strong_seq", "b")
			require.Equal(t, Account{Balance: 2, Count: 1}, bAcct, "the processor applied the append once")
		})
	}
}

// TestAliasedTypeIsDispatched: events stored under an old name of a type
// (kept as a Registry alias) are read by the store-side filter and reach
// the type's handler.
func TestAliasedTypeIsDispatched(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("aliased", nil)}})
			_, err := f.store.Append(context.Background(), "acct-old", events.AnyVersion, events.Event{
				Data: events.Raw{Type: oldDepositedName, Payload: json.RawMessage(`{"account":"old","amount":4}`)},
			})
			require.NoError(t, err)
			res := f.append(t, "acct-old", Deposited{"old", 1})
			f.waitFor(t, res.Token, "aliased")
			a, ok := account(t, r, "aliased", "old")
			require.True(t, ok)
			require.Equal(t, Account{Balance: 5, Count: 2}, a)
		})
	}
}

// TestDropInBatches: after a rebuild the old generation's rows are deleted
// in batches of DropBatch rows, each a short transaction of its own.
func TestDropInBatches(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("dropped", nil)}, DropBatch: 3})
			var mu sync.Mutex
			var batches []int
			projections.SetDropHook(r, func(name string, gen, n int) {
				mu.Lock()
				defer mu.Unlock()
				if name == "dropped" && gen == 1 {
					batches = append(batches, n)
				}
			})
			require.NoError(t, r.Start(ctx))
			t.Cleanup(func() { stop(t, r) })
			for i := range 10 {
				f.append(t, "acct-"+accountName(i), Deposited{accountName(i), i})
			}
			f.waitHead(t, "dropped")
			require.NoError(t, r.Rebuild(ctx, "dropped"))

			mu.Lock()
			require.Equal(t, []int{3, 3, 3, 1}, batches)
			mu.Unlock()
			old, err := f.source.Rows().List(ctx, "projection/dropped/1", "accounts", feed.RowQuery{})
			require.NoError(t, err)
			require.Empty(t, old, "the old generation is gone")
			require.Len(t, snapshot(t, r, "dropped", "accounts"), 10)
		})
	}
}

// TestRunnerOnUserRouter mounts the projections on a router the
// application runs, with its own middleware.
func TestRunnerOnUserRouter(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			router, err := message.NewRouter(message.RouterConfig{}, nil)
			require.NoError(t, err)
			var seen atomic.Int32
			router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
				return func(msg *message.Message) ([]*message.Message, error) {
					seen.Add(1)
					return h(msg)
				}
			})
			r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("mounted", nil)}})
			require.NoError(t, r.AddHandlers(router))
			require.NoError(t, r.Start(ctx))
			done := make(chan error, 1)
			go func() { done <- router.Run(ctx) }()
			select {
			case <-router.Running():
			case err := <-done:
				t.Fatalf("the router stopped before running: %v", err)
			}

			res := f.append(t, "acct-1", Deposited{"a", 3}, Deposited{"a", 4})
			f.waitFor(t, res.Token, "mounted")
			a, ok := account(t, r, "mounted", "a")
			require.True(t, ok)
			require.Equal(t, 7, a.Balance)
			require.EqualValues(t, 2, seen.Load(), "the router's middleware ran")
			require.ErrorContains(t, r.AddHandlers(router), "before Start")

			stop(t, r)
			require.NoError(t, router.Close())
			require.NoError(t, <-done, "the router's Run")
		})
	}
}

// TestPartitionedProjection splits a projection in partitions applied in
// parallel; a wait on its name waits for the lowest partition.
func TestPartitionedProjection(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("split", &projections.Config{Partitions: 4})}})
			var last events.AppendResult
			for i := range 12 {
				last = f.append(t, "acct-"+accountName(i), Deposited{accountName(i), i + 1}, Deposited{accountName(i), 1})
			}
			f.waitFor(t, last.Token, "split")
			for i := range 12 {
				a, ok := account(t, r, "split", accountName(i))
				require.True(t, ok, "the wait on the name covers every partition")
				require.Equal(t, Account{Balance: i + 2, Count: 2}, a)
			}
			st, err := r.Status(context.Background(), "split")
			require.NoError(t, err)
			require.False(t, st.Checkpoint.Before(last.Token))
		})
	}
}

// TestRebuildSwitchUnderConcurrentAppends rebuilds a strong and an
// eventual projection while appends keep arriving: every event lands in
// the read model exactly once, whichever generation it reached first.
func TestRebuildSwitchUnderConcurrentAppends(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var reject atomic.Bool
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{
				strongBalances("race_strong", &reject), balances("race_eventual", nil),
			}})
			const before, during = 20, 40
			for range before {
				f.append(t, "acct-1", Deposited{"a", 1})
			}
			var wg sync.WaitGroup
			appended := make(chan error, 1)
			wg.Go(func() {
				for range during {
					if _, err := f.store.Append(ctx, "acct-1", events.AnyVersion, events.Event{Data: Deposited{"a", 1}}); err != nil {
						appended <- err
						return
					}
				}
			})
			require.NoError(t, r.Rebuild(ctx, "race_strong"))
			require.NoError(t, r.Rebuild(ctx, "race_eventual"))
			wg.Wait()
			close(appended)
			require.NoError(t, <-appended)
			f.waitHead(t, "race_strong", "race_eventual")
			for _, name := range []string{"race_strong", "race_eventual"} {
				a, ok := account(t, r, name, "a")
				require.True(t, ok, name)
				require.Equal(t, before+during, a.Balance, name)
				require.Equal(t, before+during, a.Count, "%s: every event applied once", name)
			}
		})
	}
}

// TestRebuildAcrossProcesses runs the same projection in two runners (two
// processes sharing a store): a rebuild started in one runs wherever the
// membership puts it, switches once, and leaves no rebuild checkpoint and
// no double application behind, in either.
func TestRebuildAcrossProcesses(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			r1 := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("shared", nil)}})
			r2 := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("shared", nil)}})
			for i := range 30 {
				f.append(t, "acct-"+accountName(i%5), Deposited{accountName(i % 5), 1})
			}
			f.waitHead(t, "shared")
			require.NoError(t, r1.Rebuild(ctx, "shared"))
			late := f.append(t, "acct-late", Deposited{"late", 2})
			f.waitFor(t, late.Token, "shared")

			for _, r := range []*projections.Runner{r1, r2} {
				st, err := r.Status(ctx, "shared")
				require.NoError(t, err)
				require.Equal(t, 2, st.Generation)
				require.Nil(t, st.Rebuild)
				for i := range 5 {
					a, ok := account(t, r, "shared", accountName(i))
					require.True(t, ok)
					require.Equal(t, Account{Balance: 6, Count: 6}, a)
				}
				a, ok := account(t, r, "shared", "late")
				require.True(t, ok)
				require.Equal(t, Account{Balance: 2, Count: 1}, a)
			}
			// A runner that ran the rebuild's processor deletes its checkpoint
			// once its lease is free: after the switch, or when it stops.
			stop(t, r1)
			stop(t, r2)
			inspector, ok := f.source.(feed.Inspector)
			require.True(t, ok)
			consumers, err := inspector.Consumers(ctx)
			require.NoError(t, err)
			for _, c := range consumers {
				require.NotContains(t, c.Name, "@rebuild-", "rebuild checkpoints left behind: %+v", consumers)
			}
		})
	}
}

// TestRebuildRecoversHaltedProjection: a projection halted by a bug is
// rebuilt with the fixed handler; the switch clears the halt and the live
// processor moves past the events the rebuild applied, without applying
// them twice.
func TestRebuildRecoversHaltedProjection(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var broken atomic.Bool
			broken.Store(true)
			p := projections.New("fixable", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				if e.Account == "poison" && broken.Load() {
					return errors.New("bug")
				}
				t := tx.Table("t")
				n, _, err := projections.Get[int](ctx, t, e.Account)
				if err != nil {
					return err
				}
				return t.Put(ctx, e.Account, n+e.Amount)
			})
			halted := make(chan *projections.HaltedError, 1)
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{p}, MaxAttempts: 2,
				OnHalt: func(h *projections.HaltedError) { halted <- h },
			})
			f.append(t, "s-1", Deposited{"a", 1})
			f.append(t, "s-1", Deposited{"poison", 2})
			last := f.append(t, "s-2", Deposited{"a", 3})
			await(t, chanOf(halted), "the halt")

			broken.Store(false) // deploy the fix, then rebuild instead of resuming
			require.NoError(t, r.Rebuild(ctx, "fixable"))
			f.waitFor(t, last.Token, "fixable")
			st, err := r.Status(ctx, "fixable")
			require.NoError(t, err)
			require.Equal(t, projections.StateRunning, st.State, "the switch cleared the old generation's halt")
			require.Equal(t, 2, st.Generation)
			for key, want := range map[string]int{"a": 4, "poison": 2} {
				got, ok, err := projections.Get[int](ctx, r.View("fixable").Table("t"), key)
				require.NoError(t, err)
				require.True(t, ok, key)
				require.Equal(t, want, got, "%s applied once", key)
			}
			after := f.append(t, "s-3", Deposited{"a", 10})
			f.waitFor(t, after.Token, "fixable")
			got, _, err := projections.Get[int](ctx, r.View("fixable").Table("t"), "a")
			require.NoError(t, err)
			require.Equal(t, 14, got, "the live processor carries on in the new generation")
		})
	}
}

// TestRebuildBegunAfterMonitorRead holds the monitor between reading a
// projection's state row and acting on it while a rebuild begins: the
// rebuild is newer than what the monitor read, so it must keep running
// from its checkpoint instead of being stopped, losing its checkpoint and
// replaying the feed into rows it already wrote.
func TestRebuildBegunAfterMonitorRead(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			const n = 30
			for range n {
				f.append(t, "acct-1", Deposited{"a", 1})
			}
			var armed atomic.Bool
			entered := make(chan struct{})
			rebuilding := make(chan struct{})
			var once sync.Once
			r := f.newRunner(t, projections.RunnerConfig{
				Projections: []*projections.Projection{balances("held", nil)},
				CommitBatch: 1, // the rebuild needs many commits to catch up
				OnCommitted: func(name string, _ events.Token) {
					if name == "held@rebuild-2" {
						once.Do(func() { close(rebuilding) })
					}
				},
			})
			projections.SetReconcileHook(r, func(name string) {
				if name != "held" || !armed.CompareAndSwap(true, false) {
					return
				}
				close(entered)
				select {
				case <-rebuilding:
				case <-time.After(waitTimeout):
				}
			})
			require.NoError(t, r.Start(ctx))
			t.Cleanup(func() { stop(t, r) })
			f.waitHead(t, "held")

			armed.Store(true)
			await(t, entered, "the monitor's read of the state row")
			require.NoError(t, r.Rebuild(ctx, "held"))
			a, ok := account(t, r, "held", "a")
			require.True(t, ok)
			require.Equal(t, Account{Balance: n, Count: n}, a, "every event applied once by the rebuild")
		})
	}
}
