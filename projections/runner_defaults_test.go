package projections_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestRunnerConfigDefaults: the zero RunnerConfig's fields take the values
// its documentation states (MaxAttempts 5, backoff 100ms to 5s, halt on
// failure, CommitBatch 100, RebuildCommitBatch 3,000, DropBatch 500,
// StatusPollInterval 2s, CloseTimeout 30s), and the Default constants are
// those values. A BackoffMin above 5s raises the default BackoffMax to it.
func TestRunnerConfigDefaults(t *testing.T) {
	t.Parallel()
	f := newMemFixture(t)
	c := projections.WithDefaults(&projections.RunnerConfig{Source: f.source})
	require.Equal(t, 5, c.MaxAttempts)
	require.Equal(t, 100*time.Millisecond, c.BackoffMin)
	require.Equal(t, 5*time.Second, c.BackoffMax)
	require.Equal(t, projections.HaltOnFailure, c.OnFailure)
	require.Equal(t, 100, c.CommitBatch)
	require.Equal(t, 3000, c.RebuildCommitBatch)
	require.Equal(t, 500, c.DropBatch)
	require.Equal(t, 2*time.Second, c.StatusPollInterval)
	require.Equal(t, 30*time.Second, c.CloseTimeout)
	require.Equal(t, f.store, c.Store, "Store defaults to Source")
	require.NotNil(t, c.Logger)
	require.NotNil(t, c.Clock)

	require.Equal(t, c.MaxAttempts, projections.DefaultMaxAttempts)
	require.Equal(t, c.BackoffMin, projections.DefaultBackoffMin)
	require.Equal(t, c.BackoffMax, projections.DefaultBackoffMax)
	require.Equal(t, c.CommitBatch, projections.DefaultCommitBatch)
	require.Equal(t, c.RebuildCommitBatch, projections.DefaultRebuildCommitBatch)
	require.Equal(t, c.DropBatch, projections.DefaultDropBatch)
	require.Equal(t, c.StatusPollInterval, projections.DefaultStatusPollInterval)
	require.Equal(t, c.CloseTimeout, projections.DefaultCloseTimeout)

	raised := projections.WithDefaults(&projections.RunnerConfig{Source: c.Source, BackoffMin: 7 * time.Second})
	require.Equal(t, 7*time.Second, raised.BackoffMax, "BackoffMax defaults to BackoffMin when that is larger")
}

// TestRunnerConfigBackoffMaxAlone: a BackoffMax set alone below
// DefaultBackoffMin lowers the default BackoffMin to it instead of being
// refused for a minimum the caller never set; above it, BackoffMin keeps
// its default. An explicit BackoffMin above BackoffMax is still refused,
// and a negative BackoffMax is refused naming BackoffMax.
func TestRunnerConfigBackoffMaxAlone(t *testing.T) {
	t.Parallel()
	f := newMemFixture(t)
	p := balances("backoff_max_alone", nil)
	for _, tc := range []struct{ max, wantMin time.Duration }{
		{time.Millisecond, time.Millisecond},
		{99 * time.Millisecond, 99 * time.Millisecond},
		{projections.DefaultBackoffMin, projections.DefaultBackoffMin},
		{time.Second, projections.DefaultBackoffMin},
	} {
		c := projections.WithDefaults(&projections.RunnerConfig{Source: f.source, BackoffMax: tc.max})
		require.Equal(t, tc.wantMin, c.BackoffMin, "BackoffMax %s alone", tc.max)
		require.Equal(t, tc.max, c.BackoffMax, "BackoffMax %s is kept", tc.max)
		_, err := projections.NewRunner(&projections.RunnerConfig{Source: f.source, Projections: []*projections.Projection{p}, BackoffMax: tc.max, Logger: quiet})
		require.NoError(t, err, "BackoffMax %s alone is accepted", tc.max)
	}

	_, err := projections.NewRunner(&projections.RunnerConfig{Source: f.source, Projections: []*projections.Projection{p}, BackoffMin: 50 * time.Millisecond, BackoffMax: 10 * time.Millisecond})
	require.ErrorContains(t, err, "BackoffMax (10ms) is below BackoffMin (50ms)", "an explicit BackoffMin above BackoffMax is refused")
	_, err = projections.NewRunner(&projections.RunnerConfig{Source: f.source, Projections: []*projections.Projection{p}, BackoffMax: -time.Millisecond})
	require.ErrorContains(t, err, "RunnerConfig.BackoffMax is -1ms", "a negative BackoffMax is refused for itself")
}

// TestRunnerTriesAnEventFiveTimesByDefault: with MaxAttempts left zero, a
// failing event is tried 5 times, then the projection halts at it.
func TestRunnerTriesAnEventFiveTimesByDefault(t *testing.T) {
	t.Parallel()
	f := newMemFixture(t)
	var calls atomic.Int64
	p := projections.New("always_fails", nil)
	projections.On(p, func(context.Context, *projections.Tx, events.Envelope, Deposited) error {
		calls.Add(1)
		return errors.New("broken handler")
	})
	halted := make(chan *projections.HaltedError, 1)
	f.start(t, projections.RunnerConfig{
		Projections: []*projections.Projection{p},
		OnHalt:      func(h *projections.HaltedError) { halted <- h },
	})
	f.append(t, "acct-a", Deposited{"a", 1})
	select {
	case h := <-halted:
		require.Equal(t, "always_fails", h.Projection)
	case <-time.After(waitTimeout):
		t.Fatal("the projection did not halt")
	}
	require.EqualValues(t, 5, calls.Load(), "tried DefaultMaxAttempts (5) times, then halted")
}

// depositAll appends n deposits to n accounts, 100 to a call, and returns
// the feed's events in order.
func depositAll(t *testing.T, f *fixture, n int) []events.Envelope {
	t.Helper()
	ctx := context.Background()
	for i := 0; i < n; i += 100 {
		var evs []events.Event
		for j := i; j < min(n, i+100); j++ {
			evs = append(evs, events.Event{Data: Deposited{accountName(j), 1}})
		}
		_, err := f.store.Append(ctx, fmt.Sprintf("acct-batch-%d", i), events.AnyVersion, evs...)
		require.NoError(t, err)
	}
	var all []events.Envelope
	var after events.Token
	for {
		page, err := f.store.ReadAll(ctx, after, 1000)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		all = append(all, page...)
		after = page[len(page)-1].Token
	}
	require.Len(t, all, n)
	return all
}

// unitSizes turns the positions a checkpoint committed, in order, into
// how many events each commit took.
func unitSizes(t *testing.T, all []events.Envelope, positions []events.Token) []int {
	t.Helper()
	index := map[events.Token]int{}
	for i, env := range all {
		index[env.Token] = i + 1
	}
	var sizes []int
	last := 0
	for _, pos := range positions {
		n, ok := index[pos]
		require.True(t, ok, "commit at %s, an event's token", pos)
		sizes = append(sizes, n-last)
		last = n
	}
	return sizes
}

// positionLog records OnCommitted positions per checkpoint.
type positionLog struct {
	mu  sync.Mutex
	pos map[string][]events.Token
	// done is closed once want's last event is committed under name.
	name string
	want events.Token
	done chan struct{}
}

func (l *positionLog) record(name string, pos events.Token) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pos == nil {
		l.pos = map[string][]events.Token{}
	}
	l.pos[name] = append(l.pos[name], pos)
	if name == l.name && pos == l.want {
		close(l.done)
		l.name = "" // closed once
	}
}

func (l *positionLog) of(name string) []events.Token {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]events.Token(nil), l.pos[name]...)
}

// TestRunnerBatchDefaultsShowInItsUnits: a live processor that is behind
// commits at most CommitBatch (default 100) events a unit and fills units
// that full; a rebuild commits at most RebuildCommitBatch (default 3,000)
// a unit, and fills one; and the old generation is dropped DropBatch
// (default 500) rows a transaction. In memory, where units are cheap.
func TestRunnerBatchDefaultsShowInItsUnits(t *testing.T) {
	t.Parallel()
	f := newMemFixture(t)
	const n = 3250
	all := depositAll(t, f, n)
	head := all[n-1].Token

	live := &positionLog{name: "defaults_batches", want: head, done: make(chan struct{})}
	var drops []int
	var dropMu sync.Mutex
	dropped := make(chan struct{})
	var droppedOnce sync.Once
	r := f.newRunner(t, projections.RunnerConfig{
		Projections: []*projections.Projection{balances("defaults_batches", nil)},
		OnCommitted: live.record,
		Logger:      slog.New(slog.DiscardHandler),
	})
	projections.SetDropHook(r, func(projection string, gen, rows int) {
		if projection != "defaults_batches" || gen != 1 {
			return
		}
		dropMu.Lock()
		defer dropMu.Unlock()
		drops = append(drops, rows)
		total := 0
		for _, d := range drops {
			total += d
		}
		if total >= n {
			droppedOnce.Do(func() { close(dropped) })
		}
	})
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { stop(t, r) })
	await(t, live.done, "the live processor to commit the whole feed")

	sizes := unitSizes(t, all, live.of("defaults_batches"))
	t.Logf("live units: %v", sizes)
	require.Equal(t, 100, slicesMax(sizes), "a live processor that is behind fills units of CommitBatch (100): %v", sizes)

	rebuilt := "defaults_batches@rebuild-2"
	live.mu.Lock()
	live.name, live.done = rebuilt, make(chan struct{})
	done := live.done
	live.mu.Unlock()
	require.NoError(t, r.Rebuild(context.Background(), "defaults_batches"))
	await(t, done, "the rebuild to commit the whole feed")
	sizes = unitSizes(t, all, live.of(rebuilt))
	t.Logf("rebuild units: %v", sizes)
	require.Equal(t, 3000, slicesMax(sizes), "a rebuild fills units of RebuildCommitBatch (3,000): %v", sizes)

	await(t, dropped, "generation 1 to be dropped")
	dropMu.Lock()
	defer dropMu.Unlock()
	t.Logf("drop batches: %v", drops)
	require.Equal(t, 500, slicesMax(drops), "the old generation is dropped DropBatch (500) rows at a time: %v", drops)
}

func slicesMax(s []int) int {
	m := 0
	for _, v := range s {
		m = max(m, v)
	}
	return m
}
