package saga_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
	"github.com/converge-es/converge/saga/sagatest"
)

// DupStart, DupOp and DupRead drive the "dups" saga: DupOp schedules,
// cancels, sends, completes or fails once (retried later), DupRead reads
// a read model (so it parks while the model is behind).
type DupStart struct {
	ID string `json:"id"`
}
type DupOp struct {
	ID   string `json:"id"`
	N    int    `json:"n"`
	Kind string `json:"kind"`
}
type DupRead struct {
	ID string `json:"id"`
	N  int    `json:"n"`
}

const dupModel = "dup_model"

var dupKinds = []string{"schedule", "cancel", "send", "send", "flaky", "complete"}

func dupSaga() *saga.Saga[orderState] {
	s := saga.New[orderState]("dups", nil)
	saga.StartOn(s, func(e DupStart, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[orderState], _ DupStart) error {
			st.Schedule("t", 10*time.Minute)
			return st.Send(NotifyCustomer{OrderID: st.ID(), Text: "started"})
		})
	failed := map[string]bool{} // event ids whose first attempt failed
	saga.On(s, func(e DupOp, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[orderState], e DupOp) error {
			st.State().Pings = append(st.State().Pings, e.N)
			switch e.Kind {
			case "schedule":
				st.Schedule("t", time.Duration(e.N)*time.Minute)
			case "cancel":
				st.Cancel("t")
			case "complete":
				st.Complete()
			case "flaky":
				if id := st.Event().ID; !failed[id] {
					failed[id] = true
					return saga.RetryAfter(5 * time.Minute)
				}
			}
			return st.Send(NotifyCustomer{OrderID: st.ID(), Text: fmt.Sprint(e.Kind, " ", e.N)})
		})
	saga.On(s, func(e DupRead, _ events.Envelope) string { return e.ID },
		func(st *saga.Step[orderState], e DupRead) error {
			st.State().Pings = append(st.State().Pings, -e.N)
			return st.Send(NotifyCustomer{OrderID: st.ID(), Text: fmt.Sprint("read ", e.N)})
		}, saga.Reads(dupModel))
	saga.OnTimeout(s, "t", func(st *saga.Step[orderState], to saga.Timeout) error {
		return st.Send(NotifyCustomer{OrderID: st.ID(), Text: fired(to.Name, to.Due)})
	})
	return s
}

// TestDuplicateDeliveryIsANoOp delivers the messages of a few instances
// in random order (an On event may come before its instance's start),
// with steps that park behind a read model or for a retry (messages
// queue behind them), timers that fire, also after they were cancelled
// or rescheduled (stale firings), and instances cancelled by an
// operator. Between any two moves it redelivers a message already
// delivered, at random, and checks the redelivery changed nothing: every
// row the engine keeps (instances, history, handled records, mailboxes,
// timers, indexes) and the feed (no command or timer firing appended).
// The one documented exception: a message for an id that still has no
// instance rewrites its ignored record.
func TestDuplicateDeliveryIsANoOp(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 30, 4, runDuplicates)
}

func runDuplicates(t *testing.T, mk storeMaker, seed uint64) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, 13))
	ctx := context.Background()
	reg := registry()
	events.Register[DupStart](reg, "test.dup_start")
	events.Register[DupOp](reg, "test.dup_op")
	events.Register[DupRead](reg, "test.dup_read")
	cfg := &sagatest.Config{
		Registry: reg, Sagas: []saga.Definition{dupSaga()}, Models: map[string]sagatest.Model{dupModel: nil},
		Engine: func(c *saga.EngineConfig) { c.Logger = slog.New(slog.DiscardHandler) },
	}
	if mk != nil {
		cfg.Store = mk(t, reg)
	}
	// The fixture builds the engine, clock and tracker; the test delivers
	// by hand and moves the read model itself.
	fx := sagatest.New(t, cfg)
	eng, store := fx.Engine(), fx.Store()

	ids := []string{"a", "b", "c"}
	var pending, delivered []events.Envelope
	var head events.Token // the feed read so far
	// pull adds the timer firings appended since the last look to pending.
	pull := func() {
		for {
			b, err := drive.Read(ctx, store, head, feed.Filter{}, 500)
			require.NoError(t, err)
			if len(b.Events) == 0 {
				return
			}
			for _, env := range b.Events {
				head = env.Token
				if env.Type == saga.TimerFiredType {
					pending = append(pending, env)
				}
			}
		}
	}
	for _, id := range ids {
		fx.Append(sagatest.Event{Stream: "dup-" + id, Data: DupStart{ID: id}})
		for n := range 6 {
			var data any = DupOp{ID: id, N: 1 + rng.IntN(40), Kind: dupKinds[rng.IntN(len(dupKinds))]}
			if rng.IntN(3) == 0 {
				data = DupRead{ID: id, N: n}
			}
			fx.Append(sagatest.Event{Stream: "dup-" + id, Data: data})
		}
	}
	b, err := drive.Read(ctx, store, events.Token{}, feed.Filter{}, 500)
	require.NoError(t, err)
	pending = b.Events
	head = pending[len(pending)-1].Token

	handle := func(env events.Envelope) error {
		return drive.Unit(ctx, store, 0, func(ctx context.Context) error { return eng.Handle(ctx, env) })
	}
	duplicate := func(step int) {
		env := delivered[rng.IntN(len(delivered))]
		var tf saga.TimerFired
		id := ""
		if v, err := reg.Decode(env); err == nil {
			switch v := v.(type) {
			case DupStart:
				id = v.ID
			case DupOp:
				id = v.ID
			case DupRead:
				id = v.ID
			case saga.TimerFired:
				tf, id = v, v.ID
			}
		}
		_, err := eng.Show(ctx, "dups", id)
		noInstance := errors.Is(err, saga.ErrNotFound)
		before := sagaRows(t, store, noInstance)
		require.NoError(t, handle(env), "seed %d step %d: redelivery of %s", seed, step, env.Type)
		after := sagaRows(t, store, noInstance)
		require.Equal(t, before, after, "seed %d step %d: redelivering %s %s (timer %+v) to %s changed something", seed, step, env.Type, env.ID, tf, id)
	}

	for step := 0; len(pending) > 0 || step < 40; step++ {
		require.Less(t, step, 2000, "seed %d does not finish", seed)
		switch r := rng.IntN(12); {
		case r < 5 && len(pending) > 0:
			i := rng.IntN(len(pending))
			env := pending[i]
			require.NoError(t, handle(env), "seed %d step %d: %s", seed, step, env.Type)
			pending = slices.Delete(pending, i, i+1)
			delivered = append(delivered, env)
		case r < 8 && len(delivered) > 0:
			duplicate(step)
		case r == 8:
			fx.Clock().Advance(time.Duration(rng.IntN(20)) * time.Minute)
			_, err := eng.FireDue(ctx)
			require.NoError(t, err)
			pull()
		case r == 9:
			fx.Tracker().Advance(dupModel, head) // the read model catches up
			_, err := eng.RunParked(ctx)
			require.NoError(t, err)
			pull()
		case r == 10:
			_, err := eng.RunParked(ctx)
			require.NoError(t, err)
			pull()
		default:
			err := eng.Cancel(ctx, "dups", ids[rng.IntN(len(ids))], "test")
			if !errors.Is(err, saga.ErrEnded) && !errors.Is(err, saga.ErrNotFound) {
				require.NoError(t, err)
			}
		}
	}
	// Every message, once more.
	for range delivered {
		duplicate(-1)
	}
}

// sagaTables are the tables of the engine's rows (namespace
// "converge.saga").
var sagaTables = []string{"instances", "handled", "history", "mailbox", "timers", "parked", "ignored", "claims", "requests", "ended", "ignored_index"}

// sagaRows returns every row the engine keeps and the ids of every event
// in the feed. Without ignored, the records of messages ignored for ids
// with no instance are left out (a redelivery rewrites them, as the
// package doc says).
func sagaRows(t *testing.T, store saga.Store, noInstance bool) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, table := range sagaTables {
		if noInstance && (table == "ignored" || table == "ignored_index") {
			continue
		}
		after := ""
		for {
			page, err := store.Rows().List(ctx, "converge.saga", table, feed.RowQuery{After: after, Limit: 1000})
			require.NoError(t, err)
			for _, row := range page {
				out[table+" "+row.Key] = string(row.Value)
				after = row.Key
			}
			if len(page) < 1000 {
				break
			}
		}
	}
	var pos events.Token
	for {
		b, err := drive.Read(ctx, store, pos, feed.Filter{}, 1000)
		require.NoError(t, err)
		if len(b.Events) == 0 {
			return out
		}
		for _, env := range b.Events {
			pos = env.Token
			out["feed "+env.ID] = env.Type
		}
	}
}
