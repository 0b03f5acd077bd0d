package consistency_test

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// tok returns the n-th position of a test feed.
func tok(n uint64) events.Token { return events.MakeToken(1, n) }

// setup builds a started tracker over cfg, stopped when the test ends.
func setup(t *testing.T, cfg *consistency.TrackerConfig) *consistency.Tracker {
	t.Helper()
	if cfg == nil {
		cfg = &consistency.TrackerConfig{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	tr, err := consistency.NewTracker(cfg)
	require.NoError(t, err)
	require.NoError(t, tr.Start(context.Background()))
	t.Cleanup(func() {
		require.NoError(t, tr.Stop(context.Background()))
	})
	return tr
}

// awaitParked blocks until cond holds, woken by the tracker's
// WaitersChanged signal rather than by polling on a timer.
func awaitParked(t *testing.T, tr *consistency.Tracker, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		changed := tr.WaitersChanged()
		if cond() {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("waiters did not park: stats %+v", tr.Stats())
		}
	}
}

// waitResult is what a Wait in a goroutine returned.
type waitResult struct {
	st  consistency.Status
	err error
}

// goWait runs Wait in a goroutine and returns where its result arrives.
func goWait(ctx context.Context, tr *consistency.Tracker, target events.Token, names ...string) <-chan waitResult {
	ch := make(chan waitResult, 1)
	go func() {
		st, err := tr.Wait(ctx, target, names...)
		ch <- waitResult{st, err}
	}()
	return ch
}

// receive returns the result or fails after a generous bound.
func receive(t *testing.T, ch <-chan waitResult) waitResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return")
		return waitResult{}
	}
}

// fakePositions is a PositionReader over a map.
type fakePositions struct {
	mu    sync.Mutex
	pos   map[string]events.Token
	reads map[string]int
	err   error
	// read, when set, is signalled after each read.
	read chan string
}

func newFakePositions() *fakePositions {
	return &fakePositions{pos: map[string]events.Token{}, reads: map[string]int{}}
}

func (f *fakePositions) Position(ctx context.Context, name string) (events.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads[name]++
	if f.read != nil {
		select {
		case f.read <- name:
		default:
		}
	}
	if f.err != nil {
		return events.Token{}, f.err
	}
	return f.pos[name], ctx.Err()
}

func (f *fakePositions) set(name string, pos events.Token) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pos[name] = pos
}

func (f *fakePositions) readsOf(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reads[name]
}

// fakeWatcher is a feed.CheckpointWatcher the test pushes through.
type fakeWatcher struct {
	mu        sync.Mutex
	fn        func(string, events.Token)
	cancelled bool
}

func (w *fakeWatcher) WatchCheckpoints(fn func(name string, pos events.Token)) func() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.fn = fn
	return func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		w.cancelled = true
		w.fn = nil
	}
}

func (w *fakeWatcher) push(name string, pos events.Token) {
	w.mu.Lock()
	fn := w.fn
	w.mu.Unlock()
	if fn != nil {
		fn(name, pos)
	}
}

func (w *fakeWatcher) isCancelled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cancelled
}

// fakeCounter counts positions as numbers: the minor part of the tokens.
type fakeCounter struct{ err error }

func (c fakeCounter) CountBetween(_ context.Context, after, upTo events.Token) (int64, error) {
	if c.err != nil {
		return 0, c.err
	}
	return int64(upTo.Minor() - after.Minor()), nil
}

var errBoom = errors.New("boom")

// fail makes every later read fail with err (nil: succeed again).
func (f *fakePositions) fail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// slowPositions answers no sooner than delay, as a busy database does,
// and fails when the caller's context ends first. started, when set, gets
// the name as each read begins (it must have room: it is never waited on).
type slowPositions struct {
	*fakePositions
	delay   time.Duration
	started chan string
}

func (s *slowPositions) Position(ctx context.Context, name string) (events.Token, error) {
	if s.started != nil {
		select {
		case s.started <- name:
		default:
		}
	}
	select {
	case <-ctx.Done():
		return events.Token{}, context.Cause(ctx)
	case <-time.After(s.delay):
	}
	return s.fakePositions.Position(ctx, name)
}

// gatedPositions answers once release is closed, or fails when its context
// ends first; started gets the name as each read begins, and ended the
// read's error as it returns.
type gatedPositions struct {
	*fakePositions
	release chan struct{}
	started chan string
	ended   chan error
}

func newGatedPositions() *gatedPositions {
	return &gatedPositions{
		fakePositions: newFakePositions(),
		release:       make(chan struct{}),
		started:       make(chan string, 64),
		ended:         make(chan error, 64),
	}
}

func (g *gatedPositions) Position(ctx context.Context, name string) (pos events.Token, err error) {
	defer func() { g.ended <- err }()
	g.started <- name
	select {
	case <-g.release:
		return g.fakePositions.Position(ctx, name)
	case <-ctx.Done():
		return events.Token{}, context.Cause(ctx)
	}
}

// within receives from ch, failing the test with msg after a generous bound.
func within[T any](t *testing.T, ch <-chan T, msg string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatal(msg)
		var zero T
		return zero
	}
}
