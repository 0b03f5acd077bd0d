package converge_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/saga"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}
func (b *lockedBuffer) String() string { b.mu.Lock(); defer b.mu.Unlock(); return b.b.String() }

// TestStartDeadlineDuringTakeoverWarns: the older build's process is busy in
// a handler, so the newer build's takeover takes a while. The caller's ctx
// ends Start's wait, by its deadline or by the caller's cancel (a signal
// handler's): Start returns nil, a running client, and the takeover the
// README promises did not happen, so it warns ("gives up, with a
// warning"). Only a Stop during the start ends the wait quietly.
func TestStartDeadlineDuringTakeoverWarns(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"deadline", "cancel"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			startEndedByCallerWarns(t, how == "cancel")
		})
	}
}

func startEndedByCallerWarns(t *testing.T, byCancel bool) {
	t.Helper()
	ctx := context.Background()
	reg := events.NewRegistry()
	events.Register[rdPlaced](reg, "rd.placed")
	events.Register[rdCharged](reg, "rd.charged")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	block := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(block) }) }
	t.Cleanup(unblock)
	entered := make(chan struct{}, 1)
	build := func(charges bool, log *slog.Logger) *converge.Client {
		s := saga.New[struct{}]("shipping", nil)
		saga.StartOn(s, func(e rdPlaced, _ events.Envelope) string { return e.OrderID },
			func(*saga.Step[struct{}], rdPlaced) error {
				if !charges {
					select {
					case entered <- struct{}{}:
					default:
					}
					<-block // the older build's handler is busy
				}
				return nil
			})
		if charges {
			saga.On(s, func(e rdCharged, _ events.Envelope) string { return e.OrderID },
				func(st *saga.Step[struct{}], _ rdCharged) error { st.Complete(); return nil })
		}
		cl, err := converge.NewClient(store, &converge.Config{Sagas: []saga.Definition{s}, Logger: log})
		require.NoError(t, err)
		return cl
	}
	older := build(false, slog.New(slog.DiscardHandler))
	require.NoError(t, older.Start(ctx))
	t.Cleanup(func() { unblock(); _ = older.Stop(context.Background()) })
	_, err = store.Append(ctx, "order-1", events.NoStream, events.Event{Data: rdPlaced{OrderID: "1"}})
	require.NoError(t, err)
	<-entered

	buf := &lockedBuffer{}
	newer := build(true, slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn})))
	sctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if byCancel {
		sctx, cancel = context.WithCancel(ctx)
		defer cancel()
		time.AfterFunc(500*time.Millisecond, cancel)
	}
	t0 := time.Now()
	err = newer.Start(sctx)
	took := time.Since(t0)
	t.Cleanup(func() { unblock(); _ = newer.Stop(context.Background()) })
	require.NoError(t, err)
	require.True(t, strings.Contains(buf.String(), "started before taking the partitions over"),
		"Start returned after %s, when its ctx (cancelled: %t) cut the takeover wait short, without the warning: %s", took, byCancel, buf.String())
}
