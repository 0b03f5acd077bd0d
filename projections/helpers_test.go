package projections_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/projections"
)

// The test domain: accounts with deposits, withdrawals, renames and
// closing, plus a registered type no projection handles.
type (
	Deposited struct {
		Account string `json:"account"`
		Amount  int    `json:"amount"`
	}
	Withdrawn struct {
		Account string `json:"account"`
		Amount  int    `json:"amount"`
	}
	Renamed struct {
		Account string `json:"account"`
		Name    string `json:"name"`
	}
	Closed struct {
		Account string `json:"account"`
	}
	Noise struct {
		N int `json:"n"`
	}
)

// oldDepositedName is the name deposits were stored under before a rename.
const oldDepositedName = "account.deposited"

// Account is the balances projection's row.
type Account struct {
	Name    string `json:"name,omitempty"`
	Balance int    `json:"balance"`
	// Count counts applied events: a double application shows.
	Count int `json:"count"`
}

func newRegistry() *events.Registry {
	reg := events.NewRegistry()
	events.Register[Deposited](reg, "deposited")
	events.Register[Withdrawn](reg, "withdrawn")
	events.Register[Renamed](reg, "renamed")
	events.Register[Closed](reg, "closed")
	events.Register[Noise](reg, "noise")
	// Deposits were once stored under another name (see TestAliasedTypeIsDispatched).
	if err := reg.Alias(oldDepositedName, "deposited"); err != nil {
		panic(err)
	}
	return reg
}

// waitTimeout bounds every wait; passing tests never reach it, even on a
// loaded two-core machine under -race, where dead-lettering a thousand
// events one unit each took over 10 s.
const waitTimeout = 30 * time.Second

// quiet drops logs; PROJECTIONS_TEST_LOG=1 shows them when debugging.
var quiet = func() *slog.Logger {
	if os.Getenv("PROJECTIONS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}()

// fixture is one backend's store, tracker and helpers.
type fixture struct {
	backend string
	store   events.Store
	source  feed.Source
	db      *pgtest.DB // nil in memory
	tracker *consistency.Tracker
}

type backendCase struct {
	name  string
	setup func(t *testing.T) *fixture
}

var backends = []backendCase{
	{"memory", newMemFixture},
	{"postgres", newPGFixture},
}

func newMemFixture(t *testing.T) *fixture {
	t.Helper()
	s, err := memstore.New(&memstore.Config{Registry: newRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	f := &fixture{backend: "memory", store: s, source: s}
	f.tracker = newTracker(t, s.Checkpoints(), s, s.PushHealthy)
	return f
}

func newPGFixture(t *testing.T) *fixture {
	t.Helper()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 12})
	s, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: newRegistry(), Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	f := &fixture{backend: "postgres", store: s, source: s, db: db}
	f.tracker = newTracker(t, s.Checkpoints(), s, s.PushHealthy)
	return f
}

func newTracker(t *testing.T, pos consistency.PositionReader, w feed.CheckpointWatcher, healthy func() bool) *consistency.Tracker {
	t.Helper()
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{
		Positions: pos, Watcher: w, PushHealthy: healthy, Logger: quiet,
		FallbackInterval: 50 * time.Millisecond,
		// The tracker's own cap (10 s by default) would cut waitTimeout short.
		MaxTimeout: waitTimeout,
	})
	require.NoError(t, err)
	require.NoError(t, tr.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, tr.Stop(context.Background())) })
	return tr
}

// newRunner builds a runner over f (unless cfg has a Source, which must
// wrap f's) with fast retries, the fixture's tracker and a quiet logger,
// unless cfg says otherwise. It is not started.
func (f *fixture) newRunner(t *testing.T, cfg projections.RunnerConfig) *projections.Runner {
	t.Helper()
	if cfg.Source == nil {
		cfg.Source = f.source
	}
	if cfg.Tracker == nil {
		cfg.Tracker = f.tracker
	}
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 20*time.Millisecond
	}
	if cfg.StatusPollInterval == 0 {
		cfg.StatusPollInterval = 100 * time.Millisecond
	}
	r, err := projections.NewRunner(&cfg)
	require.NoError(t, err)
	return r
}

// start builds and starts a runner, stopped when the test ends.
func (f *fixture) start(t *testing.T, cfg projections.RunnerConfig) *projections.Runner {
	t.Helper()
	r := f.newRunner(t, cfg)
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { stop(t, r) })
	return r
}

// startHearingSwitches is start, with a channel that hears the runner's
// switch attempts that did not switch (one held while nobody reads).
func (f *fixture) startHearingSwitches(t *testing.T, cfg projections.RunnerConfig) (*projections.Runner, <-chan struct{}) {
	t.Helper()
	r := f.newRunner(t, cfg)
	attempts := make(chan struct{}, 1)
	projections.SetSwitchHook(r, func(string) {
		select {
		case attempts <- struct{}{}:
		default:
		}
	})
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { stop(t, r) })
	return r, attempts
}

// awaitSwitchAttempts returns after n switch attempts that did not switch,
// or once rebuilt is closed (Rebuild returned: a switch happened).
func awaitSwitchAttempts(t *testing.T, attempts, rebuilt <-chan struct{}, n int) {
	t.Helper()
	timeout := time.After(waitTimeout)
	for range n {
		select {
		case <-attempts:
		case <-rebuilt:
			t.Log("the rebuild switched in")
			return
		case <-timeout:
			require.FailNow(t, "no switch attempt")
		}
	}
}

func stop(t *testing.T, r *projections.Runner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	require.NoError(t, r.Stop(ctx))
}

// append appends data to stream at any version.
func (f *fixture) append(t *testing.T, stream string, data ...any) events.AppendResult {
	t.Helper()
	evs := make([]events.Event, len(data))
	for i, d := range data {
		evs[i] = events.Event{Data: d}
	}
	res, err := f.store.Append(context.Background(), stream, events.AnyVersion, evs...)
	require.NoError(t, err)
	return res
}

func (f *fixture) head(t *testing.T) events.Token {
	t.Helper()
	h, err := f.store.Head(context.Background())
	require.NoError(t, err)
	return h
}

// awaitStored blocks until checkpoint's stored position is at or past tok:
// after a reset, only the replay's commits move it on (a tracker may still
// hear of a commit from before the reset).
func (f *fixture) awaitStored(t *testing.T, checkpoint string, tok events.Token) {
	t.Helper()
	require.Eventually(t, func() bool {
		pos, err := f.source.Checkpoints().Position(context.Background(), checkpoint)
		return err == nil && !pos.Before(tok)
	}, waitTimeout, 5*time.Millisecond, "%s never committed %s", checkpoint, tok)
}

// waitFor blocks until the tracker knows name at or past tok.
func (f *fixture) waitFor(t *testing.T, tok events.Token, names ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	st, err := f.tracker.Wait(ctx, tok, names...)
	require.NoError(t, err)
	require.False(t, st.Stale, "projections %v did not reach %s: %+v\n%s", names, tok, st, f.diagnose())
}

// diagnose describes what can hold consumers back: their leases and
// positions, and how long the oldest open transaction in the database has
// held the feed's read horizon.
func (f *fixture) diagnose() string {
	in, ok := f.source.(feed.Inspector)
	if !ok {
		return "(no inspector)"
	}
	ctx := context.Background()
	var b strings.Builder
	if age, err := in.HorizonAge(ctx); err == nil {
		fmt.Fprintf(&b, "horizon held for %s\n", age)
	}
	cs, err := in.Consumers(ctx)
	if err != nil {
		return b.String() + "consumers: " + err.Error()
	}
	for _, c := range cs {
		fmt.Fprintf(&b, "consumer %+v\n", c)
	}
	return b.String()
}

// waitHead waits until every named projection reflects the whole feed.
func (f *fixture) waitHead(t *testing.T, names ...string) {
	t.Helper()
	f.waitFor(t, f.head(t), names...)
}

// balances is a projection over accounts whose rows count the events
// applied to them, so a double application shows.
func balances(name string, cfg *projections.Config) *projections.Projection {
	p := projections.New(name, cfg)
	update := func(ctx context.Context, tx *projections.Tx, acct string, fn func(*Account)) error {
		t := tx.Table("accounts")
		a, _, err := projections.Get[Account](ctx, t, acct)
		if err != nil {
			return err
		}
		fn(&a)
		a.Count++
		return t.Put(ctx, acct, a)
	}
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
		return update(ctx, tx, e.Account, func(a *Account) { a.Balance += e.Amount })
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Withdrawn) error {
		return update(ctx, tx, e.Account, func(a *Account) { a.Balance -= e.Amount })
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Renamed) error {
		return update(ctx, tx, e.Account, func(a *Account) { a.Name = e.Name })
	})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Closed) error {
		return tx.Table("accounts").Delete(ctx, e.Account)
	})
	return p
}

// account reads one account row through the runner's view.
func account(t *testing.T, r *projections.Runner, proj, acct string) (Account, bool) {
	t.Helper()
	a, ok, err := projections.Get[Account](context.Background(), r.View(proj).Table("accounts"), acct)
	require.NoError(t, err)
	return a, ok
}

// snapshot lists a table of the active generation.
func snapshot(t *testing.T, r *projections.Runner, proj, table string) []projections.Row {
	t.Helper()
	var out []projections.Row
	opts := &projections.ListOptions{Limit: 7} // small pages exercise paging
	for {
		rows, err := r.View(proj).Table(table).List(context.Background(), opts)
		require.NoError(t, err)
		out = append(out, rows...)
		if len(rows) < opts.Limit {
			return out
		}
		opts.After = rows[len(rows)-1].Key
	}
}

// once is a channel closed once.
type once struct {
	ch   chan struct{}
	once sync.Once
}

func newOnce() *once               { return &once{ch: make(chan struct{})} }
func (o *once) fire()              { o.once.Do(func() { close(o.ch) }) }
func (o *once) C() <-chan struct{} { return o.ch }

// await waits for ch or fails the test.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// commits records RunnerConfig.OnCommitted calls, so tests can wait for a
// runner's own progress. Unlike a Tracker it hears nothing from earlier
// runners, which matters after a checkpoint moved back.
type commits struct {
	mu   sync.Mutex
	last map[string]events.Token
	ch   chan struct{}
}

func newCommits() *commits { return &commits{last: map[string]events.Token{}, ch: make(chan struct{})} }

func (c *commits) record(name string, tok events.Token) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.last[name] = tok
	close(c.ch)
	c.ch = make(chan struct{})
}

// wait blocks until name's last commit is at or past tok.
func (c *commits) wait(t *testing.T, name string, tok events.Token) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		c.mu.Lock()
		last, ch := c.last[name], c.ch
		c.mu.Unlock()
		if !last.Before(tok) && (!tok.IsZero() || !last.IsZero()) {
			return
		}
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("%s did not commit %s (last %s)", name, tok, last)
		}
	}
}

// counter is a count that can be awaited.
type counter struct {
	mu sync.Mutex
	n  int
	ch chan struct{}
}

func newCounter() *counter { return &counter{ch: make(chan struct{})} }

func (c *counter) add() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	close(c.ch)
	c.ch = make(chan struct{})
}

func (c *counter) load() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// moveCheckpoint sets a stopped consumer's checkpoint through the public
// feed.CheckpointStore API, as an operator tool would.
func (f *fixture) moveCheckpoint(t *testing.T, name string, tok events.Token) {
	t.Helper()
	ctx := context.Background()
	cps := f.source.Checkpoints()
	lease, err := cps.Acquire(ctx, name, "test-"+name, time.Minute)
	require.NoError(t, err)
	unit, err := cps.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, unit.Commit(ctx, feed.Move{Lease: lease, Position: tok}))
	require.NoError(t, cps.Release(ctx, lease))
}

func accountName(i int) string { return fmt.Sprintf("acct-%d", i) }
