package sagatest

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// DefaultStart is where the virtual clock starts.
var DefaultStart = time.Date(2026, 1, 1, 9, 0, 0, 0, time.UTC)

// Model applies one event to a read model the fixture maintains. The
// fixture calls it for every event in order, except while the model is
// held (HoldModel), and advances the model's position in the Tracker after
// each event.
type Model func(ctx context.Context, rows feed.Rows, env events.Envelope) error

// Config sets a fixture up. Registry and Sagas are required.
type Config struct {
	// Registry has every event and command type registered.
	Registry *events.Registry
	// Sagas are the definitions under test.
	Sagas []saga.Definition
	// Models are the read models handlers declare with saga.Reads, by
	// name. A nil Model only tracks the position. Defaults to none. New
	// fails the test when a handler reads a model missing here: its step
	// would park for good, and When would not say so.
	Models map[string]Model
	// Store is the store to run on. Defaults to a new memstore.Store on
	// Registry and the virtual clock.
	Store saga.Store
	// Start is the virtual clock's start. Defaults to DefaultStart.
	Start time.Time
	// Commands is passed to saga.EngineConfig.Commands. Defaults to nil.
	Commands saga.CommandCatalog
	// Engine, when set, adjusts the engine's config before it is built.
	// Store is the fixture's when Engine is called: Engine may wrap it (to
	// inject faults, say), and the wrapper must reach the fixture's store.
	// The fixture owns Tracker, Clock and GateTimeout and sets them again
	// after Engine: the engine runs on its read models' tracker and its
	// virtual clock, and its gate gives up at once (a held model parks the
	// step), so nothing waits on wall-clock time. DrainPerTurn, left 0,
	// is 1: the read models catch up between the steps of a blocked
	// instance's queue, as the gate would wait for them to in production,
	// so a released model does not park the steps queued behind the one it
	// held.
	Engine func(*saga.EngineConfig)
}

// Fixture runs sagas under test. Use it from one goroutine.
type Fixture struct {
	t       testing.TB
	ctx     context.Context
	reg     *events.Registry
	store   saga.Store
	clock   *clocktest.Clock
	tracker *consistency.Tracker
	engine  *saga.Engine
	driver  *drive.Driver
	models  map[string]*model
	sagas   []string // the saga types of Config.Sagas, sorted
	cmdPos  events.Token
	sent    []Command
	// again are stored events appended again under their ids, to deliver
	// once more, as the runtime would a redelivered duplicate.
	again []events.Envelope
}

type model struct {
	apply Model
	pos   events.Token
	held  bool
}

// New builds a fixture; it is torn down when the test ends.
func New(tb testing.TB, cfg *Config) *Fixture {
	tb.Helper()
	t := tb
	require.NotNil(t, cfg, "sagatest.New needs a Config with Registry and Sagas")
	require.NotNil(t, cfg.Registry, "sagatest.Config.Registry is nil: register your events and commands in a registry and pass it")
	start := cfg.Start
	if start.IsZero() {
		start = DefaultStart
	}
	f := &Fixture{t: t, ctx: context.Background(), reg: cfg.Registry, clock: clocktest.New(start), models: map[string]*model{}}
	f.store = cfg.Store
	if f.store == nil {
		ms, err := memstore.New(&memstore.Config{Registry: cfg.Registry, Clock: f.clock})
		require.NoError(t, err)
		t.Cleanup(func() { _ = ms.Close() })
		f.store = ms
	}
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{Clock: f.clock})
	require.NoError(t, err)
	f.tracker = tr
	for name, m := range cfg.Models {
		f.models[name] = &model{apply: m}
		tr.Advance(name, events.Token{})
	}
	ec := saga.EngineConfig{Store: f.store, Sagas: cfg.Sagas, Commands: cfg.Commands}
	if cfg.Engine != nil {
		cfg.Engine(&ec)
	}
	// Set after Config.Engine, which may not change them (see there). The
	// gate gives up at once: a model that is not held has already caught
	// up, and a held one will not move while the step waits.
	ec.Tracker, ec.Clock, ec.GateTimeout = tr, f.clock, time.Nanosecond
	if ec.DrainPerTurn == 0 {
		ec.DrainPerTurn = 1
	}
	f.sagas = sagaNames(cfg.Sagas)
	eng, err := saga.NewEngine(&ec)
	require.NoError(t, err)
	require.NoError(t, unknownModels(eng, cfg.Models, "Config.Models"))
	f.engine = eng
	// No type filter: events stored under an alias of a handled type
	// (events.Registry.Alias) reach the engine too.
	f.driver = &drive.Driver{
		Source: f.store, Handler: eng.Handle,
		// Read models that are not held keep up with every event, the
		// sagas' commands included.
		Before: func(context.Context) error { f.applyModels(); return nil },
	}
	return f
}

// Engine returns the engine under test.
func (f *Fixture) Engine() *saga.Engine { return f.engine }

// Store returns the store the fixture runs on.
func (f *Fixture) Store() saga.Store { return f.store }

// Clock returns the virtual clock.
func (f *Fixture) Clock() *clocktest.Clock { return f.clock }

// Tracker returns the tracker of the fixture's read models.
func (f *Fixture) Tracker() *consistency.Tracker { return f.tracker }

// Event is an event to append.
type Event struct {
	// Stream is the stream to append to. Required.
	Stream string
	// Data is a value of a registered type.
	Data any
	// Correlation and Causation become the event's metadata.
	Correlation string
	Causation   string
	// ID is the event id. Defaults to a new one (in SimConfig.Events, one
	// derived from the seed and the event's place, so a seed replays it).
	// Set it to deliver a duplicate on purpose: an event whose id is
	// stored already (with the same stream and content) is not stored
	// twice, as the store is idempotent by id, but the fixture (or the
	// simulation) delivers the stored event again, as a redelivery would
	// reach it.
	ID string
}

// Given appends the events and lets the sagas take them; commands they
// send are not expected by the next ExpectCommands.
func (f *Fixture) Given(evs ...Event) *Fixture {
	f.t.Helper()
	f.When(evs...)
	f.sent = nil
	return f
}

// When appends the events and lets the sagas take them, with everything
// that follows (parked steps whose models caught up, due timers). It fails
// the test on an engine error; TryWhen returns it.
func (f *Fixture) When(evs ...Event) *Fixture {
	f.t.Helper()
	require.NoError(f.t, f.TryWhen(evs...))
	return f
}

// TryWhen is When returning the engine's first error. The event that
// failed is skipped (as a dead letter would be), so later events still
// flow.
func (f *Fixture) TryWhen(evs ...Event) error {
	f.t.Helper()
	f.sent = nil
	var first error
	for _, ev := range evs {
		if f.Append(ev).AlreadyStored {
			// Settled now, so the duplicate arrives after the events
			// before it and before those after it, in the order given.
			first = cmp.Or(first, f.Settle())
		}
	}
	return cmp.Or(first, f.Settle())
}

// Append appends one event without running anything. An event whose id
// is stored already is delivered again by the next Settle (see Event.ID).
func (f *Fixture) Append(ev Event) events.AppendResult {
	f.t.Helper()
	require.NotEmpty(f.t, ev.Stream, "sagatest.Event.Stream is empty")
	res, err := f.store.Append(f.ctx, ev.Stream, events.AnyVersion, events.Event{
		ID: ev.ID, Data: ev.Data,
		Metadata: events.Metadata{CorrelationID: ev.Correlation, CausationID: ev.Causation},
	})
	require.NoError(f.t, err)
	if res.AlreadyStored {
		envs, err := f.store.ReadStream(f.ctx, res.StreamID, res.FirstVersion, 1)
		require.NoError(f.t, err)
		require.Len(f.t, envs, 1, "sagatest: event %s is stored, yet its stream %s does not return it", ev.ID, res.StreamID)
		f.again = append(f.again, envs[0])
	}
	return res
}

// Settle runs the sagas until nothing moves: events, read models, events
// to deliver again (Event.ID), parked steps and timers due on the virtual
// clock. It returns the first engine error, after skipping the event that
// caused it. A step whose handler failed after writing through its unit
// (saga.ErrStepWroteAndFailed) is no such error: its message comes again,
// as the runtime redelivers it, and the step is retried as any failed step.
func (f *Fixture) Settle() error {
	f.t.Helper()
	var first error
	for range 1000 {
		// Models first: a read model that is not held keeps up, so only
		// held models make steps park.
		m := f.applyModels()
		n, err := f.driver.Drain(f.ctx)
		if errors.Is(err, saga.ErrStepWroteAndFailed) {
			continue // the next round delivers the event again
		}
		if err != nil {
			first = cmp.Or(first, err)
			require.NoError(f.t, f.driver.Skip(f.ctx))
			continue
		}
		r, err := f.deliverAgain()
		if errors.Is(err, saga.ErrStepWroteAndFailed) {
			continue
		}
		first = cmp.Or(first, err)
		p, err := f.runParked()
		if errors.Is(err, saga.ErrStepWroteAndFailed) {
			continue // the engine runs the step again at its next pass
		}
		require.NoError(f.t, err)
		d, err := f.engine.FireDue(f.ctx)
		if errors.Is(err, saga.ErrStepWroteAndFailed) {
			continue
		}
		require.NoError(f.t, err)
		if n+m+r+p+d == 0 {
			f.collect()
			return first
		}
	}
	f.t.Fatal("sagatest: the sagas did not settle after 1000 rounds (a step that keeps scheduling due timers or retrying at once?)")
	return nil
}

// runParked runs the engine's parked-step passes until one moves no
// instance, the read models catching up after each: a pass takes one step
// of each blocked instance (DrainPerTurn 1), so a long queue drains here,
// not one round of Settle per step. It returns how many instances moved.
func (f *Fixture) runParked() (int, error) {
	total := 0
	for range drainPasses {
		n, err := f.engine.RunParked(f.ctx)
		total += n
		if err != nil || n == 0 {
			return total, err
		}
		f.applyModels()
	}
	return total, nil
}

// drainPasses bounds runParked; Settle goes on after it.
const drainPasses = 100_000

// deliverAgain delivers the events appended again under their ids, in
// order, and returns how many it delivered. An event whose delivery
// failed after its step wrote through its unit stays first, to come again
// as the runtime would bring it; one that failed otherwise is dropped
// with its error, as a dead letter would be.
func (f *Fixture) deliverAgain() (int, error) {
	f.t.Helper()
	n := 0
	for len(f.again) > 0 {
		f.applyModels()
		err := f.driver.Run(f.ctx, f.again[0])
		if errors.Is(err, saga.ErrStepWroteAndFailed) {
			return n, err
		}
		f.again = f.again[1:]
		n++
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func (f *Fixture) applyModels() int {
	f.t.Helper()
	moved := 0
	names := make([]string, 0, len(f.models))
	for n := range f.models {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, name := range names {
		m := f.models[name]
		if m.held {
			continue
		}
		for {
			b, err := drive.Read(f.ctx, f.store, m.pos, feed.Filter{}, 100)
			require.NoError(f.t, err)
			for _, env := range b.Events {
				if m.apply != nil {
					require.NoError(f.t, drive.Unit(f.ctx, f.store, 0, func(ctx context.Context) error {
						eu, _ := events.UnitFromContext(ctx)
						u, ok := eu.(feed.Unit)
						if !ok {
							return errors.New("sagatest: the store's unit is not a feed.Unit")
						}
						return m.apply(ctx, u.Rows(), env)
					}), "model %s", name)
				}
				m.pos = env.Token
				f.tracker.Advance(name, env.Token)
				moved++
			}
			if b.ScannedTo.After(m.pos) {
				m.pos = b.ScannedTo
				f.tracker.Advance(name, m.pos)
			}
			if len(b.Events) == 0 {
				break
			}
		}
	}
	return moved
}

// HoldModel stops the fixture from applying events to a read model, as a
// lagging projection would: steps that read it park.
func (f *Fixture) HoldModel(name string) {
	f.t.Helper()
	m, ok := f.models[name]
	require.True(f.t, ok, "sagatest: no model %q in Config.Models", name)
	m.held = true
}

// ReleaseModel lets a held read model catch up, then settles, so parked
// steps run on the caught-up data.
func (f *Fixture) ReleaseModel(name string) {
	f.t.Helper()
	m, ok := f.models[name]
	require.True(f.t, ok, "sagatest: no model %q in Config.Models", name)
	m.held = false
	f.sent = nil
	require.NoError(f.t, f.Settle())
}

// Advance moves the virtual clock forward by d, jumping to each timer's due
// time and each failed step's retry time in turn, so each fires or runs
// again (and its handler runs) at the time it was due, then settles at the
// end.
func (f *Fixture) Advance(d time.Duration) *Fixture {
	f.t.Helper()
	// A virtual clock that went back would put timers already scheduled in
	// the future of "now" again, and later expectations would measure
	// from the wrong time.
	require.GreaterOrEqual(f.t, d, time.Duration(0), "sagatest: Advance moves the clock forward: d must not be negative")
	end := f.clock.Now().Add(d)
	f.sent = nil
	var sent []Command
	for {
		due, ok, err := nextDue(f.ctx, f.engine)
		require.NoError(f.t, err)
		if !ok || due.After(end) {
			break
		}
		if due.After(f.clock.Now()) {
			f.clock.Advance(due.Sub(f.clock.Now()))
		}
		require.NoError(f.t, f.Settle())
		sent = append(sent, f.sent...)
		f.sent = nil
	}
	f.clock.Advance(end.Sub(f.clock.Now()))
	require.NoError(f.t, f.Settle())
	f.sent = append(sent, f.sent...)
	return f
}

// nextDue is the earlier of the engine's next timer and its next retry of
// a parked step: where a virtual clock jumps next.
func nextDue(ctx context.Context, e *saga.Engine) (time.Time, bool, error) {
	timer, tok, err := e.NextTimer(ctx)
	if err != nil {
		return time.Time{}, false, err
	}
	retry, rok, err := e.NextRetry(ctx)
	if err != nil {
		return time.Time{}, false, err
	}
	switch {
	case tok && rok:
		if retry.Before(timer) {
			return retry, true, nil
		}
		return timer, true, nil
	case rok:
		return retry, true, nil
	}
	return timer, tok, nil
}

// Command is a command a saga sent.
type Command struct {
	ID          string
	Type        string
	Stream      string
	Value       any
	Correlation string
	Causation   string
	CausalToken events.Token
	Token       events.Token
}

// collect reads the commands appended since the last look.
func (f *Fixture) collect() {
	f.t.Helper()
	for {
		b, err := drive.Read(f.ctx, f.store, f.cmdPos, feed.Filter{}, 500)
		require.NoError(f.t, err)
		envs := b.Events
		for _, env := range envs {
			f.cmdPos = env.Token
			if !sentByASaga(env) {
				continue
			}
			v, err := f.reg.Decode(env)
			require.NoError(f.t, err)
			c := Command{
				ID: env.ID, Type: env.Type, Stream: env.StreamID, Value: v,
				Correlation: env.Metadata.CorrelationID, Causation: env.Metadata.CausationID, Token: env.Token,
			}
			if s := env.Metadata.Extra[command.MetaCausalToken]; s != "" {
				c.CausalToken, _ = events.ParseToken(s)
			}
			f.sent = append(f.sent, c)
		}
		if len(envs) == 0 {
			return // drive.Read returns nothing only once nothing is pending
		}
	}
}

// sentByASaga reports whether env is a command a saga sent: an event of a
// command stream carrying the sender the engine sets on every command it
// sends (a step's, a compensation, a timeout's, an OnCancel's). A
// command.Rejected, on a command stream too, is not one, nor is an event a
// test appends there itself.
func sentByASaga(env events.Envelope) bool {
	return strings.HasPrefix(env.StreamID, command.StreamPrefix) && env.Type != command.RejectedType &&
		env.Metadata.Extra[command.MetaSender] != ""
}

// Commands returns the commands the sagas sent since the last Given, When,
// Advance or ReleaseModel began, in order: not a command.Rejected the test
// feeds them, though it is appended to a command stream.
func (f *Fixture) Commands() []Command { return append([]Command(nil), f.sent...) }

// ExpectCommands asserts the commands sent since the last When (or Given,
// Advance, ReleaseModel) are want, in order.
func (f *Fixture) ExpectCommands(want ...any) *Fixture {
	f.t.Helper()
	got := make([]any, 0, len(f.sent))
	for _, c := range f.sent {
		got = append(got, c.Value)
	}
	if len(want) == 0 {
		want = []any{}
	}
	require.Equal(f.t, want, got, "commands sent")
	return f
}

// Instance returns an instance's description; it fails the test when there
// is none.
func (f *Fixture) Instance(sagaName, id string) saga.Info {
	f.t.Helper()
	f.knownSaga(sagaName)
	tl, err := f.engine.Show(f.ctx, sagaName, id)
	require.NoError(f.t, err)
	return tl.Info
}

// History returns an instance's timeline (empty when no instance has the
// id: the messages ignored for it are listed). A saga type Config.Sagas
// does not define fails the test: a misspelt one would list nothing, and
// a check that nothing was ignored would hold whatever the run did.
func (f *Fixture) History(sagaName, id string) saga.Timeline {
	f.t.Helper()
	f.knownSaga(sagaName)
	tl, err := f.engine.Show(f.ctx, sagaName, id)
	if !errors.Is(err, saga.ErrNotFound) {
		require.NoError(f.t, err)
	}
	return tl
}

// knownSaga fails the test when sagaName is not a saga type of
// Config.Sagas.
func (f *Fixture) knownSaga(sagaName string) {
	f.t.Helper()
	require.NoError(f.t, unknownSaga(f.sagas, sagaName, "Config.Sagas"))
}

// State decodes an instance's state.
func State[S any](f *Fixture, sagaName, id string) S {
	f.t.Helper()
	var s S
	require.NoError(f.t, json.Unmarshal(f.Instance(sagaName, id).State, &s))
	return s
}

// ExpectStatus asserts an instance's status.
func (f *Fixture) ExpectStatus(sagaName, id string, want saga.Status) *Fixture {
	f.t.Helper()
	require.Equal(f.t, want, f.Instance(sagaName, id).Status, "status of %s/%s", sagaName, id)
	return f
}

// ExpectTimer asserts the instance has an active timer called name, due
// after d from now on the virtual clock.
func (f *Fixture) ExpectTimer(sagaName, id, name string, d time.Duration) *Fixture {
	f.t.Helper()
	due, ok := f.Instance(sagaName, id).Timers[name]
	require.True(f.t, ok, "timer %q of %s/%s is not scheduled", name, sagaName, id)
	require.True(f.t, due.Equal(f.clock.Now().Add(d)), "timer %q due at %s, want %s", name, due, f.clock.Now().Add(d))
	return f
}

// ExpectNoTimer asserts the instance has no active timer called name.
func (f *Fixture) ExpectNoTimer(sagaName, id, name string) *Fixture {
	f.t.Helper()
	_, ok := f.Instance(sagaName, id).Timers[name]
	require.False(f.t, ok, "timer %q of %s/%s is still scheduled", name, sagaName, id)
	return f
}

// ExpectTimers asserts the instance's active timers are exactly want:
// each name due after its duration from now on the virtual clock, and no
// other timer. ExpectTimers(saga, id, nil) asserts none is active.
func (f *Fixture) ExpectTimers(sagaName, id string, want map[string]time.Duration) *Fixture {
	f.t.Helper()
	now := f.clock.Now()
	got := map[string]time.Duration{}
	for name, due := range f.Instance(sagaName, id).Timers {
		got[name] = due.Sub(now)
	}
	if want == nil {
		want = map[string]time.Duration{}
	}
	require.Equal(f.t, want, got, "active timers of %s/%s (name: due after)", sagaName, id)
	return f
}

// ExpectParked asserts the instance's step is parked waiting for models:
// exactly those given, or, with none given, any (at least one). They are
// the models the step reads (saga.Info.Waiting), also those of them not
// behind; its "parked" history entry names the ones that were. A step
// parked for a retry (a handler's error, saga.RetryAfter) waits for no
// model and fails it.
func (f *Fixture) ExpectParked(sagaName, id string, models ...string) *Fixture {
	f.t.Helper()
	in := f.Instance(sagaName, id)
	require.Equal(f.t, saga.StatusParked, in.Status, "status of %s/%s", sagaName, id)
	require.NotEmpty(f.t, in.Waiting, "%s/%s is parked for a retry at %s, not waiting for read models", sagaName, id, in.RetryAt)
	if len(models) > 0 {
		require.ElementsMatch(f.t, models, in.Waiting, "models %s/%s waits for", sagaName, id)
	}
	return f
}
