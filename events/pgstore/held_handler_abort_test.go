package pgstore_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
)

// heldLeaseTTL is the lease TTL of the held-handler tests: how long a
// consumer waits for a handler that outlives its delivery before it gives
// the unit up.
const heldLeaseTTL = time.Second

// appendOrder appends the event the held-handler tests deliver.
func appendOrder(t *testing.T, st *pgstore.Store) (string, events.Token) {
	t.Helper()
	res, err := st.Append(t.Context(), "order-1", events.NoStream, events.Event{Data: events.Raw{Type: "placed", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)
	return res.EventIDs[0], res.Tokens[0]
}

// sleepingHandler writes a mark through its unit's transaction, then, the
// first time only, reports its backend's pid on entered and runs a
// statement that ignores its context (as a handler stuck in a query does)
// and reports how it ended on slept.
type sleepingHandler struct {
	calls   atomic.Int32
	entered chan uint32
	slept   chan error
}

func newSleepingHandler() *sleepingHandler {
	return &sleepingHandler{entered: make(chan uint32, 1), slept: make(chan error, 1)}
}

func (h *sleepingHandler) handle(ctx context.Context, id string) error {
	tx, err := pgstore.TxFromContext(ctx)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO abort_marks VALUES ($1)`, id); err != nil {
		return err
	}
	if h.calls.Add(1) > 1 {
		return nil
	}
	var pid uint32
	if err := tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		return err
	}
	h.entered <- pid
	_, err = tx.Exec(context.WithoutCancel(ctx), `SELECT pg_sleep(60)`)
	h.slept <- err
	return err
}

// awaitSlept waits for the handler's statement to fail: its unit was
// aborted under it.
func (h *sleepingHandler) awaitSlept(t *testing.T) {
	t.Helper()
	select {
	case err := <-h.slept:
		require.Error(t, err, "the handler's statement outlived its aborted unit")
	case <-time.After(abortWait):
		t.Fatal("the handler's statement still runs after its unit was given up")
	}
}

func awaitPID(t *testing.T, entered <-chan uint32) uint32 {
	t.Helper()
	select {
	case pid := <-entered:
		return pid
	case <-time.After(abortWait):
		t.Fatal("the handler was never called")
		return 0
	}
}

func awaitToken(t *testing.T, committed <-chan events.Token, want events.Token) {
	t.Helper()
	deadline := time.After(abortWait)
	for {
		select {
		case pos := <-committed:
			if pos == want {
				return
			}
		case <-deadline:
			t.Fatalf("the event at %s was never committed", want)
		}
	}
}

// A paused processor on a router waits LeaseTTL for a handler still
// running after its delivery ended, then gives its unit up while the
// handler's statement runs on the unit's transaction. The statement
// fails, the connection goes with the unit (its backend ends), and the
// event is delivered again on resume and committed once. Under -race,
// giving the unit up touches nothing of the connection the handler uses.
func TestPausedProcessorAbortsAHandlerOutlivingLeaseTTL(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 6)
	createMarks(t, b.db.Pool)
	id, tok := appendOrder(t, b.store)

	h := newSleepingHandler()
	committed := make(chan events.Token, 8)
	p, err := feed.NewProcessor(b.store, &feed.ProcessorConfig{
		Name:        "abort-held",
		Categories:  []string{"order"},
		Subscriber:  feed.SubscriberConfig{LeaseTTL: heldLeaseTTL},
		OnCommitted: func(_ string, pos events.Token) { committed <- pos },
	}, func(ctx context.Context, env events.Envelope) error { return h.handle(ctx, env.ID) })
	require.NoError(t, err)
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: abortWait}, watermill.NopLogger{})
	require.NoError(t, err)
	require.NoError(t, p.AddHandlers(r))
	rctx, stop := context.WithCancel(context.WithoutCancel(t.Context()))
	ran := make(chan error, 1)
	go func() { ran <- r.Run(rctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-ran:
			require.NoError(t, err)
		case <-time.After(abortWait):
			t.Error("the router did not stop")
		}
		require.NoError(t, p.Close())
	})

	pid := awaitPID(t, h.entered)
	awaitSleeping(t, b.db.Pool, pid)
	pctx, cancel := context.WithTimeout(t.Context(), abortWait)
	defer cancel()
	resume, err := p.Pause(pctx)
	require.NoError(t, err, "the pause must end once the handler's unit is given up")
	h.awaitSlept(t)
	awaitGone(t, b.db.Pool, pid)
	require.Zero(t, countMarks(t, b.db.Pool), "the given-up unit's write was committed")

	resume()
	awaitToken(t, committed, tok)
	require.Equal(t, int32(2), h.calls.Load(), "the event is delivered again once")
	require.Equal(t, 1, countMarks(t, b.db.Pool), "the event's write must commit exactly once")
	var marked string
	require.NoError(t, b.db.Pool.QueryRow(t.Context(), `SELECT id FROM abort_marks`).Scan(&marked))
	require.Equal(t, id, marked)
}

// A subscription whose context ends while a handler holds its message
// gives the message up at once, and its unit LeaseTTL later, the handler
// still running a statement on the unit's transaction: the statement
// fails, the backend ends, and the next subscription commits the event
// once. Under -race, giving the unit up touches nothing of the connection
// the handler uses.
func TestEndedSubscriptionAbortsAHandlerOutlivingLeaseTTL(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 6)
	createMarks(t, b.db.Pool)
	id, tok := appendOrder(t, b.store)

	committed := make(chan events.Token, 8)
	sub, err := feed.NewSubscriber(b.store, &feed.SubscriberConfig{
		ConsumerName: "abort-held",
		LeaseTTL:     heldLeaseTTL,
		OnCommitted:  func(_ string, pos events.Token) { committed <- pos },
	})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, sub.Close()) })
	sctx, end := context.WithCancel(t.Context())
	defer end()
	ch, err := sub.Subscribe(sctx, "order")
	require.NoError(t, err)

	h := newSleepingHandler()
	var held *message.Message
	select {
	case held = <-ch:
	case <-time.After(abortWait):
		t.Fatal("no message was delivered")
	}
	require.Equal(t, id, held.UUID)
	go func() { _ = h.handle(held.Context(), held.UUID) }()
	pid := awaitPID(t, h.entered)
	awaitSleeping(t, b.db.Pool, pid)

	end()
	select {
	case _, open := <-ch:
		require.False(t, open, "a message was delivered after the subscription ended")
	case <-time.After(abortWait):
		t.Fatal("the subscription's channel did not close")
	}
	h.awaitSlept(t)
	awaitGone(t, b.db.Pool, pid)
	held.Nack()
	require.Zero(t, countMarks(t, b.db.Pool), "the given-up unit's write was committed")

	again, err := sub.Subscribe(t.Context(), "order")
	require.NoError(t, err)
	select {
	case msg := <-again:
		require.Equal(t, id, msg.UUID, "the given-up event must be delivered again")
		require.NoError(t, h.handle(msg.Context(), msg.UUID))
		require.True(t, msg.Ack())
	case <-time.After(abortWait):
		t.Fatal("the given-up event was not delivered again")
	}
	awaitToken(t, committed, tok)
	require.Equal(t, 1, countMarks(t, b.db.Pool), "the event's write must commit exactly once")
}
