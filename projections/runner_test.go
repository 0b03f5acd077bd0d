package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

func TestHandlerWritesLandWithCheckpoint(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			var mu sync.Mutex
			var updates []projections.Update
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{balances("balances", nil)},
				OnUpdate: func(u projections.Update) {
					mu.Lock()
					updates = append(updates, u)
					mu.Unlock()
				},
			})
			f.append(t, "account-1", Deposited{"a1", 100}, Renamed{"a1", "Ada"}, Withdrawn{"a1", 30})
			last := f.append(t, "account-2", Deposited{"a2", 5}, Closed{"a2"})
			f.waitFor(t, last.Token, "balances")

			a1, ok := account(t, r, "balances", "a1")
			require.True(t, ok)
			require.Equal(t, Account{Name: "Ada", Balance: 70, Count: 3}, a1)
			_, ok = account(t, r, "balances", "a2")
			require.False(t, ok, "Closed deletes the row")

			st, err := r.Status(context.Background(), "balances")
			require.NoError(t, err)
			require.Equal(t, projections.StateRunning, st.State)
			require.Equal(t, 1, st.Generation)
			require.Equal(t, last.Token, st.Checkpoint)
			require.Equal(t, last.Token, st.Applied)
			require.Nil(t, st.Rebuild)
			require.Equal(t, feed.LeaseHolding, st.Consumer.Lease, "the only runner delivers: %s", st.Consumer)
			require.False(t, st.Consumer.Degraded(), "%s", st.Consumer)
			require.Equal(t, uint64(1), st.Consumer.Acquired)
			pos, ok := f.tracker.Position("balances")
			require.True(t, ok)
			require.False(t, pos.Before(last.Token), "the tracker was advanced")

			// A tracker that read the stored checkpoint may see the commit before its OnUpdate calls ran.
			require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(updates) >= 5 }, waitTimeout, time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, updates, 5)
			require.Equal(t, projections.UpdatePut, updates[0].Kind)
			require.Equal(t, "accounts", updates[0].Table)
			require.Equal(t, "a1", updates[0].Key)
			require.JSONEq(t, `{"balance":100,"count":1}`, string(updates[0].Value))
			require.Equal(t, projections.Update{
				Kind: projections.UpdateDelete, Projection: "balances", Generation: 1,
				Table: "accounts", Key: "a2", Token: last.Token,
			}, updates[4])
		})
	}
}

// TestUnhandledTypesAreSkipped: the store filters the feed by the types a
// projection handles, so the events it does not handle never reach it,
// not even as a delivery to skip in a unit of its own, and its checkpoint
// still moves past them.
func TestUnhandledTypesAreSkipped(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			var calls, deliveries atomic.Int32
			p := projections.New("deposits_only", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				calls.Add(1)
				return tx.Table("t").Put(ctx, e.Account, e.Amount)
			})
			count := func(h message.HandlerFunc) message.HandlerFunc {
				return func(msg *message.Message) ([]*message.Message, error) {
					deliveries.Add(1)
					return h(msg)
				}
			}
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}, Middleware: []message.HandlerMiddleware{count}})
			f.append(t, "s-1", Deposited{"a", 1})
			for i := range 20 {
				f.append(t, "s-1", Noise{i}, Renamed{"a", "x"})
			}
			_, err := f.store.Append(context.Background(), "s-2", events.AnyVersion,
				events.Event{Data: events.Raw{Type: "nobody.registered.this", Payload: json.RawMessage(`{"x":1}`)}})
			require.NoError(t, err)
			f.waitHead(t, "deposits_only")

			require.EqualValues(t, 1, calls.Load())
			require.EqualValues(t, 1, deliveries.Load(), "unhandled events are filtered out in the store, not delivered")
			st, err := r.Status(context.Background(), "deposits_only")
			require.NoError(t, err)
			require.Equal(t, f.head(t), st.Checkpoint, "the checkpoint moves past unhandled events")
			require.Equal(t, st.Checkpoint, st.Applied, "the checkpoint is the generation's watermark")
		})
	}
}

func TestPerStreamOrderUnderConcurrentAppends(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			const streams, perStream = 4, 15
			var mu sync.Mutex
			last := map[string]int64{}
			var violations []string
			p := projections.New("order_check", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Deposited) error {
				mu.Lock()
				if env.Version != last[env.StreamID]+1 {
					violations = append(violations, fmt.Sprintf("%s: v%d after v%d", env.StreamID, env.Version, last[env.StreamID]))
				}
				last[env.StreamID] = env.Version
				mu.Unlock()
				return tx.Table("last").Put(ctx, env.StreamID, env.Version)
			})
			f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})

			var wg sync.WaitGroup
			for s := range streams {
				wg.Go(func() {
					for i := range perStream {
						_, err := f.store.Append(context.Background(), fmt.Sprintf("order-%d", s), events.AnyVersion,
							events.Event{Data: Deposited{Account: "x", Amount: i}})
						if err != nil {
							t.Error(err)
							return
						}
					}
				})
			}
			wg.Wait()
			f.waitHead(t, "order_check")
			mu.Lock()
			defer mu.Unlock()
			require.Empty(t, violations)
			for s := range streams {
				require.EqualValues(t, perStream, last[fmt.Sprintf("order-%d", s)])
			}
		})
	}
}

func TestFailingHandlerLeavesNoPartialWritesAndRetries(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			const succeedOn = 3
			var attempts atomic.Int32
			p := projections.New("flaky", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				n := attempts.Add(1)
				// Writes to two tables, then fails: none of it may survive.
				if err := tx.Table("attempts").Put(ctx, fmt.Sprintf("attempt-%d", n), n); err != nil {
					return err
				}
				if err := tx.Table("totals").Put(ctx, e.Account, int(n)*1000); err != nil {
					return err
				}
				if n < succeedOn {
					return fmt.Errorf("transient failure %d", n)
				}
				return nil
			})
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}, MaxAttempts: 5})
			res := f.append(t, "s-1", Deposited{"a", 1})
			f.waitFor(t, res.Token, "flaky")

			require.EqualValues(t, succeedOn, attempts.Load())
			rows := snapshot(t, r, "flaky", "attempts")
			require.Len(t, rows, 1, "only the successful attempt's writes are kept")
			require.Equal(t, fmt.Sprintf("attempt-%d", succeedOn), rows[0].Key)
			require.Equal(t, res.Token, rows[0].Token)
			total, ok, err := projections.Get[int](context.Background(), r.View("flaky").Table("totals"), "a")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, succeedOn*1000, total)
		})
	}
}

func TestHaltAfterMaxAttemptsThenResume(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			var broken atomic.Bool
			broken.Store(true)
			var calls atomic.Int32
			p := projections.New("halting", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				if e.Account == "poison" {
					calls.Add(1)
					if err := tx.Table("t").Put(ctx, "poison-partial", 1); err != nil {
						return err
					}
					if broken.Load() {
						return errors.New("boom: cannot handle poison")
					}
				}
				return tx.Table("t").Put(ctx, e.Account, e.Amount)
			})
			halted := make(chan *projections.HaltedError, 1)
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{p},
				MaxAttempts: 3,
				// One event per unit, so every call is a counted attempt
				// (in a batch, a failure behind the unit's head is retried
				// uncounted at the head of its own unit first).
				CommitBatch: 1,
				OnHalt:      func(h *projections.HaltedError) { halted <- h },
			})
			good := f.append(t, "s-1", Deposited{"good", 1})
			poison := f.append(t, "s-1", Deposited{"poison", 2})
			after := f.append(t, "s-2", Deposited{"after", 3})

			var h *projections.HaltedError
			select {
			case h = <-halted:
			case <-time.After(waitTimeout):
				t.Fatal("the projection did not halt")
			}
			require.ErrorIs(t, h, projections.ErrHalted)
			require.Equal(t, poison.EventIDs[0], h.EventID)
			require.Contains(t, h.Reason, "boom")

			st, err := r.Status(context.Background(), "halting")
			require.NoError(t, err)
			require.Equal(t, projections.StateHalted, st.State)
			require.Contains(t, st.HaltedReason, "boom")
			require.Equal(t, poison.EventIDs[0], st.HaltedEventID)
			require.Equal(t, good.Token, st.Checkpoint, "the checkpoint stays before the failing event")
			require.EqualValues(t, 3, calls.Load())
			rows := snapshot(t, r, "halting", "t")
			require.Len(t, rows, 1, "readers keep the last good state, without partial writes")
			require.Equal(t, "good", rows[0].Key)

			broken.Store(false)
			require.NoError(t, r.Resume(context.Background(), "halting"))
			f.waitFor(t, after.Token, "halting")
			require.EqualValues(t, 4, calls.Load(), "no attempts while halted, one after Resume")
			st, err = r.Status(context.Background(), "halting")
			require.NoError(t, err)
			require.Equal(t, projections.StateRunning, st.State)
			require.Empty(t, st.HaltedReason)
			require.Len(t, snapshot(t, r, "halting", "t"), 4)
		})
	}
}

func TestDeadLetterPolicyContinues(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			var attempts atomic.Int32
			p := projections.New("lettering", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				if e.Account == "poison" {
					attempts.Add(1)
					_ = tx.Table("t").Put(ctx, "partial", 1)
					return errors.New("poison pill")
				}
				return tx.Table("t").Put(ctx, e.Account, e.Amount)
			})
			lettered := make(chan projections.DeadLetter, 1)
			r := f.start(t, projections.RunnerConfig{
				Projections:  []*projections.Projection{p},
				MaxAttempts:  2,
				CommitBatch:  1, // every call a counted attempt
				OnFailure:    projections.DeadLetterOnFailure,
				OnDeadLetter: func(dl projections.DeadLetter) { lettered <- dl },
			})
			f.append(t, "s-1", Deposited{"a", 1})
			poison := f.append(t, "s-1", Deposited{"poison", 2})
			f.append(t, "s-2", Deposited{"b", 3})
			f.waitHead(t, "lettering")

			require.EqualValues(t, 2, attempts.Load())
			dls, err := r.DeadLetters(context.Background(), "lettering")
			require.NoError(t, err)
			require.Len(t, dls, 1)
			dl := dls[0]
			require.Equal(t, poison.EventIDs[0], dl.EventID)
			require.Equal(t, "lettering", dl.Projection)
			require.Equal(t, 1, dl.Generation)
			require.Equal(t, "s-1", dl.StreamID)
			require.EqualValues(t, 2, dl.Version)
			require.Equal(t, poison.Token, dl.Token)
			require.Equal(t, "deposited", dl.Type)
			require.JSONEq(t, `{"account":"poison","amount":2}`, string(dl.Payload))
			require.Contains(t, dl.Reason, "poison pill")
			require.Equal(t, 2, dl.Attempts)
			require.False(t, dl.CreatedAt.IsZero())
			await(t, chanOf(lettered), "OnDeadLetter")

			keys := []string{}
			for _, row := range snapshot(t, r, "lettering", "t") {
				keys = append(keys, row.Key)
			}
			require.Equal(t, []string{"a", "b"}, keys, "the poison event left nothing behind and the rest was applied")
		})
	}
}

// TestDeadLettersListsAll: DeadLetters returns every dead letter of a
// projection, not the first page of the store's rows (feed.DefaultRowLimit,
// 1,000).
func TestDeadLettersListsAll(t *testing.T) {
	t.Parallel()
	f := newMemFixture(t)
	p := projections.New("letters_all", nil)
	projections.On(p, func(context.Context, *projections.Tx, events.Envelope, Deposited) error {
		return errors.New("always fails")
	})
	r := f.start(t, projections.RunnerConfig{
		Projections: []*projections.Projection{p},
		MaxAttempts: 1,
		OnFailure:   projections.DeadLetterOnFailure,
	})
	const n = feed.DefaultRowLimit + 57
	all := depositAll(t, f, n)
	f.waitHead(t, "letters_all")

	dls, err := r.DeadLetters(context.Background(), "letters_all")
	require.NoError(t, err)
	require.Equal(t, n, len(dls), "every event was dead-lettered and is listed")
	want := map[string]bool{}
	for _, env := range all {
		want[env.ID] = true
	}
	got := map[string]bool{}
	for i, dl := range dls {
		require.EqualValues(t, i+1, dl.ID, "IDs number the listing from 1")
		got[dl.EventID] = true
	}
	require.Equal(t, want, got, "each event once")
}

// chanOf turns "a value arrived" into a closed channel for await.
func chanOf[T any](ch <-chan T) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		<-ch
		close(done)
	}()
	return done
}

// countingProjection counts events: a double effect shows.
func countingProjection(name string) *projections.Projection {
	p := projections.New(name, nil)
	projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, _ Deposited) error {
		t := tx.Table("counts")
		n, _, err := projections.Get[int](ctx, t, "total")
		if err != nil {
			return err
		}
		if err := t.Put(ctx, "total", n+1); err != nil {
			return err
		}
		seen, _, err := projections.Get[int](ctx, t, "seen-"+env.ID)
		if err != nil {
			return err
		}
		return t.Put(ctx, "seen-"+env.ID, seen+1)
	})
	return p
}

func requireCountedOnce(t *testing.T, r *projections.Runner, name string, ids []string) {
	t.Helper()
	total, _, err := projections.Get[int](context.Background(), r.View(name).Table("counts"), "total")
	require.NoError(t, err)
	require.Equal(t, len(ids), total)
	for _, id := range ids {
		seen, _, err := projections.Get[int](context.Background(), r.View(name).Table("counts"), "seen-"+id)
		require.NoError(t, err)
		require.Equal(t, 1, seen, "event %s", id)
	}
}

func TestCrashBetweenReadModelWriteAndCheckpoint(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			var ids []string
			for i := range 5 {
				res := f.append(t, "s-1", Deposited{"a", i})
				ids = append(ids, res.EventIDs[0])
			}
			victim := ids[2]
			crashed := newOnce()
			// The handler has run and written; the process "dies" before the
			// Ack that would commit the checkpoint: it never answers, and the
			// runner is stopped under it.
			crash := func(h message.HandlerFunc) message.HandlerFunc {
				return func(msg *message.Message) ([]*message.Message, error) {
					out, err := h(msg)
					if env, _ := feed.EnvelopeFromMessage(msg); err == nil && env.ID == victim {
						crashed.fire()
						<-msg.Context().Done()
						return nil, errors.New("process died")
					}
					return out, err
				}
			}
			r1 := f.newRunner(t, projections.RunnerConfig{
				Projections: []*projections.Projection{countingProjection("counter")},
				Middleware:  []message.HandlerMiddleware{crash},
			})
			require.NoError(t, r1.Start(context.Background()))
			await(t, crashed.C(), "the crash")
			stop(t, r1)

			pos, err := f.source.Checkpoints().Position(context.Background(), "counter")
			require.NoError(t, err)
			require.True(t, pos.Before(f.head(t)), "the checkpoint did not pass the victim")

			r2 := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{countingProjection("counter")}})
			f.waitHead(t, "counter")
			requireCountedOnce(t, r2, "counter", ids)
		})
	}
}

func TestDuplicatedDeliveriesApplyOnce(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			var calls, handled atomic.Int32
			counter := func(n *atomic.Int32) message.HandlerMiddleware {
				return func(h message.HandlerFunc) message.HandlerFunc {
					return func(msg *message.Message) ([]*message.Message, error) {
						n.Add(1)
						return h(msg)
					}
				}
			}
			var ids []string
			for i := range 4 {
				ids = append(ids, f.append(t, "s-1", Deposited{"a", i}).EventIDs[0])
			}
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{countingProjection("dup_counter")},
				// Watermill's Duplicator runs the handler twice per message.
				Middleware: []message.HandlerMiddleware{counter(&calls), middleware.Duplicator, counter(&handled)},
			})
			f.waitHead(t, "dup_counter")
			requireCountedOnce(t, r, "dup_counter", ids)
			require.EqualValues(t, 4, calls.Load())
			require.EqualValues(t, 8, handled.Load(), "every message reached the handler twice")
		})
	}
}

// TestCheckpointIsTheWatermark: a projection's progress is recorded once,
// as its processor's checkpoint, in the unit that applies the events. A
// checkpoint moved back (what Reset does) therefore applies the events
// after it again; duplicated deliveries and redeliveries after a lost Ack
// are covered by the unit instead (see TestDuplicatedDeliveriesApplyOnce
// and TestCrashBetweenReadModelWriteAndCheckpoint).
func TestCheckpointIsTheWatermark(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			var ids []string
			var toks []events.Token
			for i := range 6 {
				res := f.append(t, "s-1", Deposited{"a", i})
				ids, toks = append(ids, res.EventIDs[0]), append(toks, res.Token)
			}
			r1 := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{countingProjection("replayed")}})
			require.NoError(t, r1.Start(context.Background()))
			f.waitHead(t, "replayed")
			stop(t, r1)
			requireCountedOnce(t, r1, "replayed", ids)

			f.moveCheckpoint(t, "replayed", toks[1])
			c := newCommits()
			var deliveries atomic.Int32
			count := func(h message.HandlerFunc) message.HandlerFunc {
				return func(msg *message.Message) ([]*message.Message, error) {
					deliveries.Add(1)
					return h(msg)
				}
			}
			r2 := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{countingProjection("replayed")},
				Middleware:  []message.HandlerMiddleware{count},
				OnCommitted: c.record,
			})
			c.wait(t, "replayed", f.head(t))
			require.EqualValues(t, 4, deliveries.Load(), "events after the moved checkpoint were delivered again")
			total, _, err := projections.Get[int](context.Background(), r2.View("replayed").Table("counts"), "total")
			require.NoError(t, err)
			require.Equal(t, 10, total, "and applied again")
			for i, id := range ids {
				seen, _, err := projections.Get[int](context.Background(), r2.View("replayed").Table("counts"), "seen-"+id)
				require.NoError(t, err)
				require.Equal(t, 1+min(1, max(0, i-1)), seen, "event %d", i)
			}
		})
	}
}

func TestTrackerWaitsForProjection(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("waited", nil)}})
			for i := range 5 {
				res := f.append(t, "s-1", Deposited{"a", 1})
				// Read-your-own-write: wait on the token, then read.
				got, err := consistency.Read(context.Background(), f.tracker, res.Token, []string{"waited"},
					func(ctx context.Context) (Account, error) {
						a, _, err := projections.Get[Account](ctx, r.View("waited").Table("accounts"), "a")
						return a, err
					})
				require.NoError(t, err)
				require.False(t, got.Stale)
				require.Equal(t, i+1, got.Value.Balance)
			}
		})
	}
}

func TestCommitBatchFailureMidUnit(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			var ids []string
			for i := range 6 {
				ids = append(ids, f.append(t, "s-1", Deposited{"a", i}).EventIDs[0])
			}
			poison := ids[3]
			var fail atomic.Bool
			fail.Store(true)
			var (
				poisonRuns   atomic.Int32
				mu           sync.Mutex
				unitRuns     = map[events.Unit]int{} // holds each unit, so no pointer is reused
				behindHeadRs int
			)
			p := projections.New("batched", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Deposited) error {
				u, ok := events.UnitFromContext(ctx)
				if !ok {
					return errors.New("no unit in the handler's context")
				}
				mu.Lock()
				unitRuns[u]++
				if env.ID == poison && unitRuns[u] > 1 {
					behindHeadRs++
				}
				mu.Unlock()
				if env.ID == poison {
					poisonRuns.Add(1)
					if fail.Load() {
						return errors.New("poison")
					}
				}
				t := tx.Table("counts")
				seen, _, err := projections.Get[int](ctx, t, "seen-"+env.ID)
				if err != nil {
					return err
				}
				return t.Put(ctx, "seen-"+env.ID, seen+1)
			})
			halted := make(chan *projections.HaltedError, 1)
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{p},
				CommitBatch: 8,
				MaxAttempts: 3,
				OnHalt:      func(h *projections.HaltedError) { halted <- h },
			})
			// The events before the poison succeed on every redelivery of the
			// unit; the poison's attempts still add up to a halt. A failure
			// behind the head of a unit does not count (it may come from an
			// earlier event's writes): the unit is cut before it and it fails
			// MaxAttempts times more at the head of its own. Whether the
			// first read hands the poison behind a head depends on what the
			// read finds committed (on PostgreSQL another session's open
			// transaction can end a page early), so that run is counted.
			await(t, chanOf(halted), "the halt")
			mu.Lock()
			behind := behindHeadRs
			mu.Unlock()
			require.LessOrEqual(t, behind, 1, "the poison runs behind a head at most once: the cut puts it at the head")
			require.EqualValues(t, 3+behind, poisonRuns.Load())
			st, err := r.Status(context.Background(), "batched")
			require.NoError(t, err)
			require.Equal(t, projections.StateHalted, st.State)
			require.Equal(t, poison, st.HaltedEventID)

			fail.Store(false)
			require.NoError(t, r.Resume(context.Background(), "batched"))
			f.waitHead(t, "batched")
			for _, id := range ids {
				seen, _, err := projections.Get[int](context.Background(), r.View("batched").Table("counts"), "seen-"+id)
				require.NoError(t, err)
				require.Equal(t, 1, seen, "event %s", id)
			}
		})
	}
}
