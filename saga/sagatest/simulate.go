package sagatest

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/google/uuid"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/internal/shell"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// SeedFlag is the test flag -seed: when set, Simulate runs only that seed
// (the one a failure printed), in each simulation whose seeds include it,
// so a failure replays exactly (a test none of whose simulations include
// the seed fails, saying so):
//
//	go test example.com/shop/orders -run TestOrderSimulation -seed 17
//
// It is defined in the test binaries of packages whose tests import this
// one: name such a package to go test (as the replay command a failure
// prints does), or go test tests the package in the current directory,
// which may not know the flag.
var SeedFlag = flag.Int64("seed", -1, "sagatest: run only this simulation seed (printed by a failing simulation)")

// Defaults of SimConfig.
const (
	DefaultSeeds     = 20
	DefaultMaxSteps  = 20_000
	DefaultCrash     = 0.1
	DefaultDuplicate = 0.15
	DefaultHorizon   = 24 * time.Hour
)

// SimConfig configures a simulation. Registry, Sagas and Events are
// required.
type SimConfig struct {
	// Registry has every event and command type registered.
	Registry *events.Registry
	// Sagas returns the definitions under test for a seed's store (a
	// handler that reads a read model reads it from that store's rows).
	// It is called again after every crash: the restarted engine runs
	// definitions built anew, so nothing a handler keeps outside its
	// state survives a crash. Build them fresh on each call.
	Sagas func(store saga.Store) []saga.Definition
	// Commands returns the command handlers (command.Handle) for a seed's
	// store. They run on Watermill's cqrs command processor over
	// gochannel, in a process of their own that the simulated crashes
	// (which are the saga engine's) do not stop. Defaults to none:
	// commands are only recorded.
	Commands func(store saga.Store) []cqrs.CommandHandler
	// Models are the read models, as in Config.Models (a seed fails at
	// once when a handler reads one missing here). The simulation moves
	// each one forward at its own random pace and holds some back for a
	// while.
	Models map[string]Model
	// Events start the scenario: they are appended, in order, before the
	// simulation delivers anything. An event given without an ID gets one
	// derived from the seed and its place in Events, so a seed replays
	// it under the same id. One given again under the id of an event
	// given before it (same stream and content) is stored once and
	// delivered again, as a redelivery would be (see Event.ID).
	Events []Event
	// Invariants are checked after every action (Final false), those
	// taken while settling included, and once at the end, when everything
	// has settled (Final true). An invariant that panics fails the seed
	// as one that returns an error does.
	Invariants []Invariant
	// Seeds is how many seeds Simulate runs, from FirstSeed. Defaults to
	// DefaultSeeds (20).
	Seeds     int
	FirstSeed uint64
	// MaxSteps bounds the actions of one seed; a seed that has not
	// settled by then fails. Defaults to DefaultMaxSteps.
	MaxSteps int
	// Crash is the chance that a unit is dropped before its commit and
	// the engine restarted from the store: a delivery's unit, and each
	// unit the engine commits itself while it runs parked steps, retries
	// and queued messages (Engine.RunParked) or fires timers
	// (Engine.FireDue), while the run goes on and while it settles.
	// Duplicate is the chance that a delivery is repeated. Defaults to
	// DefaultCrash (0.1) and DefaultDuplicate (0.15); a negative value
	// turns the fault off.
	Crash     float64
	Duplicate float64
	// Horizon is how far the virtual clock may run while settling, firing
	// the timers due within it. Defaults to DefaultHorizon (24h).
	Horizon time.Duration
}

func (c *SimConfig) withDefaults() SimConfig {
	out := SimConfig{}
	if c != nil {
		out = *c
	}
	if out.Seeds <= 0 {
		out.Seeds = DefaultSeeds
	}
	if out.MaxSteps <= 0 {
		out.MaxSteps = DefaultMaxSteps
	}
	if out.Crash == 0 {
		out.Crash = DefaultCrash
	}
	if out.Duplicate == 0 {
		out.Duplicate = DefaultDuplicate
	}
	if out.Horizon <= 0 {
		out.Horizon = DefaultHorizon
	}
	return out
}

func (c *SimConfig) validate() error {
	switch {
	case c.Registry == nil:
		return errors.New("sagatest: SimConfig.Registry is nil: register your events and commands in a registry and pass it")
	case c.Sagas == nil:
		return errors.New("sagatest: SimConfig.Sagas is nil: return the definitions under test")
	case len(c.Events) == 0:
		return errors.New("sagatest: SimConfig.Events is empty: give the events that start the scenario")
	case c.FirstSeed > math.MaxInt64-uint64(max(c.Seeds, 1)-1):
		return fmt.Errorf("sagatest: SimConfig.FirstSeed %d with %d seeds runs past %d, the largest seed -seed can replay: start lower", c.FirstSeed, c.Seeds, int64(math.MaxInt64))
	}
	return nil
}

// Invariant checks the world a simulation built; a non-nil error fails the
// seed.
type Invariant func(v *SimView) error

// SimView is what an invariant sees.
type SimView struct {
	Seed uint64
	// Final is true once, after everything has settled: every message
	// delivered, every read model caught up, every parked step run and
	// every timer and retry of a failed step within SimConfig.Horizon
	// fired.
	Final  bool
	Store  saga.Store
	Engine *saga.Engine
	// Commands are every command appended so far, in feed order (a copy:
	// an invariant may sort it).
	Commands []Command
	// Events are every event appended so far, in feed order (a copy).
	Events []events.Envelope
	ctx    context.Context
	sagas  []string // the run's saga types, sorted
}

// Instances lists every instance of a saga type, however many: it pages
// through Engine.List, whose one call stops at a Filter.Limit.
func (v *SimView) Instances(sagaName string) ([]saga.Info, error) {
	if err := unknownSaga(v.sagas, sagaName, "the simulation"); err != nil {
		return nil, err
	}
	var out []saga.Info
	f := saga.Filter{Saga: sagaName, Limit: instancesPage}
	for {
		page, err := v.Engine.List(v.ctx, f)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if len(page) < f.Limit {
			return out, nil
		}
		f.After = page[len(page)-1].Cursor()
	}
}

// instancesPage is how many instances SimView.Instances asks for at once.
const instancesPage = 1000

// Timeline returns an instance's timeline (saga.Engine.Show).
func (v *SimView) Timeline(sagaName, id string) (saga.Timeline, error) {
	if err := unknownSaga(v.sagas, sagaName, "the simulation"); err != nil {
		return saga.Timeline{}, err
	}
	return v.Engine.Show(v.ctx, sagaName, id)
}

// Context is the simulation's context, for reads of your own.
func (v *SimView) Context() context.Context { return v.ctx }

// CommandsOf returns the commands of one stored type sent with the
// correlation id (a saga's instance id).
func (v *SimView) CommandsOf(commandType, correlation string) []Command {
	var out []Command
	for _, c := range v.Commands {
		if c.Type == commandType && c.Correlation == correlation {
			out = append(out, c)
		}
	}
	return out
}

// Simulate runs the simulation for every seed of cfg (or only -seed N),
// each as a subtest named "seed=N", and fails a seed with its error (a
// panic in an invariant or a read model included), its last actions and
// the command that replays it.
func Simulate(t *testing.T, cfg *SimConfig) {
	t.Helper()
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	seeds := make([]uint64, 0, c.Seeds)
	for i := range uint64(c.Seeds) {
		seeds = append(seeds, c.FirstSeed+i)
	}
	if *SeedFlag >= 0 {
		// Only a simulation whose seeds include it runs the seed: its
		// subtest is then named as in the run that printed it (go test
		// names a second "seed=N" of one test "seed=N#01"), so the
		// printed -run pattern picks the simulation that failed, not
		// another one of the same test.
		want := uint64(*SeedFlag)
		seeds = nil
		if want >= c.FirstSeed && want-c.FirstSeed < uint64(c.Seeds) {
			seeds = []uint64{want}
		}
		noteSeedRun(t, want, c, len(seeds) > 0)
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			if err := SimulateSeed(t.Context(), &c, seed); err != nil {
				t.Fatalf("%v\nreplay: %s", err, replayCommand(t.Name(), seed))
			}
		})
	}
}

// seedRuns records, per test, whether one of its simulations ran the
// -seed seed.
var seedRuns sync.Map // *testing.T -> *atomic.Bool

// noteSeedRun records whether this simulation of t runs the -seed seed,
// and fails t at its end if none of its simulations did: a seed outside
// every simulation's seeds would otherwise run nothing, and pass.
func noteSeedRun(t *testing.T, seed uint64, c SimConfig, runs bool) {
	t.Helper()
	v, loaded := seedRuns.LoadOrStore(t, new(atomic.Bool))
	ran, _ := v.(*atomic.Bool) // only *atomic.Bool is stored
	if runs {
		ran.Store(true)
	}
	if loaded {
		return
	}
	t.Cleanup(func() {
		seedRuns.Delete(t)
		if !ran.Load() {
			t.Errorf("sagatest: -seed %d is outside the seeds of every simulation %s runs (this one: %d to %d): nothing ran; pass a seed a failure printed, or widen SimConfig.FirstSeed and Seeds to include it",
				seed, t.Name(), c.FirstSeed, c.FirstSeed+uint64(c.Seeds)-1)
		}
	})
}

// replayCommand is the go test command that runs only the named seed's
// subtest: go test -run takes a regular expression per element of a test's
// name, so each element is matched literally and whole, and the pattern is
// quoted for a POSIX shell. It names the package under test by its import
// path, which go test takes from anywhere in its module: without one, go
// test tests the package in the current directory, whose test binary
// (the module root's, say) may have no -seed flag. When the package's
// import path cannot be found (no go.mod above the test's directory), the
// command changes to the package's directory first.
func replayCommand(name string, seed uint64) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	args := fmt.Sprintf("-run %s -seed %d", shell.Quote(strings.Join(parts, "/")), seed)
	switch pkg := packageUnderTest(); {
	case pkg != "":
		return fmt.Sprintf("go test %s %s", shell.Word(pkg), args)
	case testDir != "":
		return fmt.Sprintf("cd %s && go test %s", shell.Word(testDir), args)
	}
	return "go test " + args
}

// testDir is the directory the test binary started in: go test runs a
// package's test binary in the package's directory.
var testDir, _ = os.Getwd()

// packageUnderTest is the import path of the package in testDir: the
// module path in the nearest go.mod above it, joined with the path from
// there. It is "" when none is found.
var packageUnderTest = sync.OnceValue(func() string {
	if testDir == "" {
		return ""
	}
	for dir := testDir; ; {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil {
			mod := modulePath(b)
			rel, err := filepath.Rel(dir, testDir)
			if mod == "" || err != nil {
				return ""
			}
			return path.Join(mod, filepath.ToSlash(rel))
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
})

// modulePath returns the path of a go.mod's module directive, or "".
func modulePath(gomod []byte) string {
	for line := range strings.Lines(string(gomod)) {
		line, _, _ = strings.Cut(line, "//")
		f := strings.Fields(line)
		if len(f) != 2 || f[0] != "module" {
			continue
		}
		if p, err := strconv.Unquote(f[1]); err == nil {
			return p
		}
		return f[1]
	}
	return ""
}

// panicError is a panic in code the simulation calls (an invariant, a
// read model, a SimConfig function), recovered so that it fails its seed
// alone, with the seed's replay command, instead of the test binary.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v\n\n%s", p.value, p.stack) }

// Unwrap returns the panic's value when it is an error.
func (p *panicError) Unwrap() error {
	err, _ := p.value.(error)
	return err
}

// protect runs fn and returns a panic in it as a *panicError.
func protect(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{value: r, stack: debug.Stack()}
		}
	}()
	return fn()
}

// errCrash is the fault that drops a unit before its commit.
var errCrash = errors.New("sagatest: simulated crash before commit")

// idNamespace is the namespace of the event ids the simulation derives
// from a seed.
var idNamespace = uuid.MustParse("0d6c3f5e-8a41-4b7e-9f3a-52c1e4b8d7a6")

// eventID is the id of SimConfig.Events[i] given without one: derived
// from the seed, so a seed replays it.
func (s *sim) eventID(i int) string {
	return uuid.NewSHA1(idNamespace, fmt.Appendf(nil, "sagatest\x00%d\x00%d", s.seed, i)).String()
}

// withIDs returns evs with an id given to each event that has none, where
// the store would draw a random one: the n-th such event of the seed's
// run gets one derived from the seed and n. A seed replays its actions in
// the same order, so it replays these ids too.
func (s *sim) withIDs(evs []events.Event) []events.Event {
	var out []events.Event
	for i, ev := range evs {
		if ev.ID != "" {
			continue
		}
		if out == nil {
			out = slices.Clone(evs)
		}
		n := s.appended.Add(1)
		out[i].ID = uuid.NewSHA1(idNamespace, fmt.Appendf(nil, "sagatest\x00%d\x00appended\x00%d", s.seed, n)).String()
	}
	if out == nil {
		return evs
	}
	return out
}

// idStore is the seed's store as the code under test sees it (the sagas,
// the command handlers, the read models, the engine): an event appended
// without an id, through the store or through one of its units, gets one
// derived from the seed (sim.withIDs) instead of a random one.
type idStore struct {
	*memstore.Store
	sim *sim
}

// Append appends evs, those without an id given one.
func (s *idStore) Append(ctx context.Context, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	return s.Store.Append(ctx, streamID, expected, s.sim.withIDs(evs)...)
}

// Checkpoints begins units that give ids too.
func (s *idStore) Checkpoints() feed.CheckpointStore {
	return idCheckpoints{CheckpointStore: s.Store.Checkpoints(), sim: s.sim}
}

type idCheckpoints struct {
	feed.CheckpointStore
	sim *sim
}

func (c idCheckpoints) Begin(ctx context.Context) (feed.Unit, error) {
	u, err := c.CheckpointStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &idUnit{Unit: u, sim: c.sim}, nil
}

// idUnit is a unit of the seed's store whose appends give ids as
// idStore's do.
type idUnit struct {
	feed.Unit
	sim *sim
}

// Append appends evs, those without an id given one.
func (u *idUnit) Append(ctx context.Context, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	return u.Unit.Append(ctx, streamID, expected, u.sim.withIDs(evs)...)
}

// Context returns ctx carrying this unit, so that a handler appending
// through the unit of its context gets ids too.
func (u *idUnit) Context(ctx context.Context) context.Context {
	return events.ContextWithUnit(u.Unit.Context(ctx), u)
}

// Writes passes feed.WriteCounter on.
func (u *idUnit) Writes() uint64 {
	if wc, ok := u.Unit.(feed.WriteCounter); ok {
		return wc.Writes()
	}
	return 0
}

// Announce passes feed.Announcer on.
func (u *idUnit) Announce() {
	if an, ok := u.Unit.(feed.Announcer); ok {
		an.Announce()
	}
}

// crashStore is the store the seed's engine runs on: the seed's store,
// whose units crash before their commit (crashUnit) while the engine runs
// work of its own (sim.crashable).
type crashStore struct {
	*idStore
	sim *sim
}

// Checkpoints begins units that may crash.
func (c *crashStore) Checkpoints() feed.CheckpointStore {
	return crashCheckpoints{CheckpointStore: c.idStore.Checkpoints(), sim: c.sim}
}

// Append fails once the process crashed.
func (c *crashStore) Append(ctx context.Context, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if c.sim.dead {
		return events.AppendResult{}, errCrash
	}
	return c.idStore.Append(ctx, streamID, expected, evs...)
}

type crashCheckpoints struct {
	feed.CheckpointStore
	sim *sim
}

// Begin fails once the process crashed.
func (c crashCheckpoints) Begin(ctx context.Context) (feed.Unit, error) {
	if c.sim.dead {
		return nil, errCrash
	}
	u, err := c.CheckpointStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return &crashUnit{Unit: u, sim: c.sim}, nil
}

// crashUnit is a unit whose commit may crash (sim.crashCommit): it is
// rolled back, nothing of it written.
type crashUnit struct {
	feed.Unit
	sim *sim
}

func (u *crashUnit) Commit(ctx context.Context, moves ...feed.Move) error {
	if u.sim.crashCommit() {
		_ = u.Rollback(context.WithoutCancel(ctx))
		return errCrash
	}
	return u.Unit.Commit(ctx, moves...)
}

// Writes passes feed.WriteCounter on, so the engine still tells a failed
// step that wrote through its unit from one that did not.
func (u *crashUnit) Writes() uint64 {
	if wc, ok := u.Unit.(feed.WriteCounter); ok {
		return wc.Writes()
	}
	return 0
}

// Announce passes feed.Announcer on.
func (u *crashUnit) Announce() {
	if an, ok := u.Unit.(feed.Announcer); ok {
		an.Announce()
	}
}

// SimulateSeed runs one seed and returns the first invariant that failed
// or the first error the engine or a command handler returned, with the
// actions that led to it. A saga handler's error is the engine's to retry
// (saga.Config.MaxAttempts): the simulation runs the retries when they are
// due, and an instance that runs out of attempts fails, which invariants
// see. A panic in an invariant, a read model or a SimConfig function is
// returned as the seed's error, with the panic's value (wrapped, when it
// is an error) and stack.
func SimulateSeed(ctx context.Context, cfg *SimConfig, seed uint64) (err error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return err
	}
	s, err := newSim(ctx, &c, seed)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, s.close()) }()
	if err := protect(func() error { return s.run(ctx) }); err != nil {
		return fmt.Errorf("sagatest: simulation seed %d: %w\nlast actions:\n  %s", seed, err, strings.Join(s.trace, "\n  "))
	}
	return nil
}

type simModel struct {
	name  string
	apply Model
	next  int // index into sim.all of the next event to apply
	held  bool
}

type sim struct {
	cfg     *SimConfig
	seed    uint64
	rng     *rand.Rand
	clock   *clocktest.Clock
	store   *memstore.Store
	ids     *idStore // store as the code under test sees it
	tracker *consistency.Tracker
	ecfg    saga.EngineConfig
	engine  *saga.Engine
	handled map[string]bool // command types with a handler
	takes   map[string]bool // event types a saga handles (saga.Engine.Types)
	sagas   []string        // the saga types, sorted
	bus     *gochannel.GoChannel
	router  *message.Router
	stop    context.CancelFunc
	done    chan error

	// Crashes of the engine's own units (crashable, crashCommit).
	armed bool               // the engine runs work of its own
	dead  bool               // a unit crashed: the process is down
	die   context.CancelFunc // cancels the dead process's context

	appended atomic.Uint64 // events appended without an id (withIDs)

	models  []*simModel
	pos     events.Token
	all     []events.Envelope
	sent    []Command
	sagaQ   map[string][]events.Envelope
	sagaKey []string
	cmdQ    map[string][]events.Envelope
	cmdKey  []string
	trace   []string
}

type errSlot struct{}

func newSim(ctx context.Context, c *SimConfig, seed uint64) (*sim, error) {
	s := &sim{
		cfg: c, seed: seed, rng: rand.New(rand.NewPCG(seed, 0x5a6a)), clock: clocktest.New(DefaultStart),
		handled: map[string]bool{}, sagaQ: map[string][]events.Envelope{}, cmdQ: map[string][]events.Envelope{},
	}
	if err := command.Register(c.Registry); err != nil {
		return nil, err
	}
	st, err := memstore.New(&memstore.Config{Registry: c.Registry, Clock: s.clock})
	if err != nil {
		return nil, err
	}
	s.store, s.ids = st, &idStore{Store: st, sim: s}
	if err := protect(func() error { return s.init(ctx) }); err != nil {
		return nil, errors.Join(err, s.close())
	}
	return s, nil
}

// init builds the seed's world on its fresh store.
func (s *sim) init(ctx context.Context) error {
	c, st := s.cfg, s.ids
	var err error
	if s.tracker, err = consistency.NewTracker(&consistency.TrackerConfig{Clock: s.clock}); err != nil {
		return err
	}
	names := make([]string, 0, len(c.Models))
	for name := range c.Models {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		s.models = append(s.models, &simModel{name: name, apply: c.Models[name]})
		s.tracker.Advance(name, events.Token{})
	}
	if err := s.startCommands(ctx); err != nil {
		return err
	}
	s.ecfg = saga.EngineConfig{
		Store: &crashStore{idStore: st, sim: s}, Sagas: c.Sagas(st), Tracker: s.tracker, Clock: s.clock,
		// A model that has not caught up will not move while the step
		// waits: park at once.
		GateTimeout: time.Nanosecond,
	}
	if c.Commands != nil {
		s.ecfg.Commands = catalog(s.handled)
	}
	if s.engine, err = saga.NewEngine(&s.ecfg); err != nil {
		return err
	}
	s.takes = map[string]bool{}
	for _, typ := range s.engine.Types() {
		s.takes[typ] = true
	}
	s.sagas = sagaNames(s.ecfg.Sagas)
	if err := unknownModels(s.engine, c.Models, "SimConfig.Models"); err != nil {
		return err
	}
	for i, ev := range c.Events {
		id := cmp.Or(ev.ID, s.eventID(i))
		res, err := st.Append(ctx, ev.Stream, events.AnyVersion, events.Event{
			ID: id, Data: ev.Data, Metadata: events.Metadata{CorrelationID: ev.Correlation, CausationID: ev.Causation},
		})
		if err != nil {
			return fmt.Errorf("sagatest: append %T to %s: %w", ev.Data, ev.Stream, err)
		}
		if res.AlreadyStored {
			if err := s.again(ctx, res); err != nil {
				return fmt.Errorf("sagatest: SimConfig.Events[%d] (id %s) again: %w", i, id, err)
			}
		}
	}
	return nil
}

// again queues the stored event an append found (an event given again
// under its id) to be delivered once more, as a redelivery would be:
// after the events appended before it, which are queued first, and before
// those appended after it.
func (s *sim) again(ctx context.Context, res events.AppendResult) error {
	if err := s.read(ctx); err != nil {
		return err
	}
	envs, err := s.store.ReadStream(ctx, res.StreamID, res.FirstVersion, 1)
	if err != nil {
		return err
	}
	if len(envs) != 1 {
		return fmt.Errorf("the event is stored, yet its stream %s does not return it", res.StreamID)
	}
	s.queue(envs[0])
	return nil
}

type catalog map[string]bool

func (c catalog) Handles(t string) bool { return c[t] }

// startCommands runs the command handlers on Watermill's cqrs command
// processor, subscribed to gochannel: the simulation publishes each
// command it delivers with the delivery's unit in the message's context
// and waits for the handler's ack.
func (s *sim) startCommands(ctx context.Context) error {
	if s.cfg.Commands == nil {
		return nil
	}
	logger := watermill.NopLogger{}
	s.bus = gochannel.NewGoChannel(gochannel.Config{PreserveContext: true, BlockPublishUntilSubscriberAck: true}, logger)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, logger)
	if err != nil {
		return err
	}
	// A handler's error goes back to the delivery instead of making
	// gochannel send the command again at once.
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if slot, ok := msg.Context().Value(errSlot{}).(*error); ok && err != nil {
				*slot = err
			}
			return out, nil
		}
	}, middleware.Recoverer)
	m := command.Marshaler{Registry: s.cfg.Registry}
	cp, err := cqrs.NewCommandProcessorWithConfig(router, cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			if p.CommandName == "" {
				return "", fmt.Errorf("sagatest: command handler %s: its command type is not registered", p.CommandHandler.HandlerName())
			}
			s.handled[p.CommandName] = true
			return command.Category(p.CommandName), nil
		},
		SubscriberConstructor: func(cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return s.bus, nil
		},
		Marshaler: m,
		Logger:    logger,
	})
	if err != nil {
		return err
	}
	if err := cp.AddHandlers(s.cfg.Commands(s.ids)...); err != nil {
		return err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.router, s.stop, s.done = router, cancel, make(chan error, 1)
	go func() { s.done <- router.Run(rctx) }()
	<-router.Running()
	return nil
}

func (s *sim) close() error {
	var errs []error
	if s.router != nil {
		s.stop()
		errs = append(errs, s.router.Close(), <-s.done, s.bus.Close())
	}
	return errors.Join(append(errs, s.store.Close())...)
}

func (s *sim) note(format string, args ...any) {
	s.trace = append(s.trace, fmt.Sprintf(format, args...))
	if len(s.trace) > 30 {
		s.trace = s.trace[1:]
	}
}

// read takes the events appended since the last look into the queues.
func (s *sim) read(ctx context.Context) error {
	for {
		b, err := drive.Read(ctx, s.store, s.pos, feed.Filter{}, 500)
		if err != nil {
			return err
		}
		for _, env := range b.Events {
			s.pos = env.Token
			s.all = append(s.all, env)
			if strings.HasPrefix(env.StreamID, command.StreamPrefix) && env.Type != command.RejectedType {
				c := Command{
					ID: env.ID, Type: env.Type, Stream: env.StreamID, Correlation: env.Metadata.CorrelationID,
					Causation: env.Metadata.CausationID, Token: env.Token,
				}
				c.CausalToken, _ = command.CausalToken(env)
				if c.Value, err = s.cfg.Registry.Decode(env); err != nil {
					return err
				}
				s.sent = append(s.sent, c)
			}
			s.queue(env)
		}
		if len(b.Events) == 0 {
			return nil
		}
	}
}

// queue queues env for delivery: a command with a handler to its handler,
// in order per command stream, anything else (and a command a saga
// handles, too) to the engine, in order per feed.ByCorrelation key.
func (s *sim) queue(env events.Envelope) {
	if s.handled[env.Type] {
		s.cmdKey = push(s.cmdQ, s.cmdKey, env.StreamID, env)
		if !s.takes[env.Type] {
			return
		}
		// A saga that handles the command's type gets it too, as the
		// sagas' processor reads it from the feed beside the handler's.
	}
	s.sagaKey = push(s.sagaQ, s.sagaKey, feed.KeyOf(feed.ByCorrelation, env), env)
}

func push(q map[string][]events.Envelope, keys []string, key string, env events.Envelope) []string {
	if len(q[key]) == 0 {
		keys = append(keys, key)
	}
	q[key] = append(q[key], env)
	return keys
}

func pop(q map[string][]events.Envelope, keys []string, i int) []string {
	key := keys[i]
	q[key] = q[key][1:]
	if len(q[key]) == 0 {
		delete(q, key)
		return slices.Delete(keys, i, i+1)
	}
	return keys
}

// The simulation's actions.
const (
	actSaga = iota
	actCommand
	actModel
	actHold
	actTimer
	actParked
	actCount
)

var actWeights = [actCount]int{actSaga: 40, actCommand: 25, actModel: 15, actHold: 3, actTimer: 5, actParked: 12}

func (s *sim) run(ctx context.Context) error {
	if err := s.read(ctx); err != nil {
		return err
	}
	total := 0
	for _, w := range actWeights {
		total += w
	}
	for step := 0; ; step++ {
		if step >= s.cfg.MaxSteps {
			return fmt.Errorf("did not settle within %d actions (a step that keeps retrying, or timers that keep firing?)", s.cfg.MaxSteps)
		}
		if len(s.sagaKey) == 0 && len(s.cmdKey) == 0 {
			// Nothing left to deliver: lagging models may catch up now.
			for _, m := range s.models {
				m.held = false
			}
		}
		if len(s.sagaKey) == 0 && len(s.cmdKey) == 0 && s.modelsCaughtUp() {
			moved, err := s.settle(ctx)
			if err != nil {
				return err
			}
			if !moved {
				return s.check(ctx, true)
			}
			// Settling acts too: what it ran is checked like any action.
			if err := s.check(ctx, false); err != nil {
				return err
			}
			continue
		}
		r := s.rng.IntN(total)
		act := 0
		for ; r >= actWeights[act]; act++ {
			r -= actWeights[act]
		}
		if err := s.act(ctx, act); err != nil {
			return err
		}
		if err := s.read(ctx); err != nil {
			return err
		}
		if err := s.check(ctx, false); err != nil {
			return err
		}
	}
}

func (s *sim) act(ctx context.Context, act int) error {
	switch act {
	case actSaga:
		if len(s.sagaKey) == 0 {
			return nil
		}
		i := s.rng.IntN(len(s.sagaKey))
		env := s.sagaQ[s.sagaKey[i]][0]
		ok, err := s.deliver(ctx, env, "saga", func(ctx context.Context) error { return s.engine.Handle(ctx, env) })
		if ok {
			s.sagaKey = pop(s.sagaQ, s.sagaKey, i)
		}
		return err
	case actCommand:
		if len(s.cmdKey) == 0 {
			return nil
		}
		i := s.rng.IntN(len(s.cmdKey))
		env := s.cmdQ[s.cmdKey[i]][0]
		ok, err := s.deliver(ctx, env, "command", func(ctx context.Context) error { return s.publish(ctx, env) })
		if ok {
			s.cmdKey = pop(s.cmdQ, s.cmdKey, i)
		}
		return err
	case actModel:
		if len(s.models) == 0 {
			return nil
		}
		m := s.models[s.rng.IntN(len(s.models))]
		if m.held {
			return nil
		}
		return s.advance(ctx, m, 1+s.rng.IntN(3))
	case actHold:
		if len(s.models) == 0 {
			return nil
		}
		m := s.models[s.rng.IntN(len(s.models))]
		m.held = !m.held
		s.note("model %s held=%t", m.name, m.held)
	case actTimer:
		due, ok, err := nextDue(ctx, s.engine)
		if err != nil || !ok {
			return err
		}
		if due.After(s.clock.Now()) {
			s.clock.Advance(due.Sub(s.clock.Now()))
		}
		n, _, err := s.crashable(ctx, "the timers", s.engine.FireDue)
		s.note("clock to %s: %d timers fired", s.clock.Now().Format(time.TimeOnly), n)
		return err // a retry now due runs at the next actParked
	case actParked:
		n, _, err := s.crashable(ctx, "the parked-step driver", s.engine.RunParked)
		if n > 0 {
			s.note("parked steps: %d instances moved", n)
		}
		return err
	}
	return nil
}

// deliver runs fn in a unit, maybe crashing before the commit (and
// restarting the engine from the store) or delivering it twice. It reports
// whether the message was delivered. A step that failed after writing
// through its unit (saga.ErrStepWroteAndFailed) leaves its message
// undelivered, to come again as the runtime redelivers it: the engine
// retries the step as any failed step.
func (s *sim) deliver(ctx context.Context, env events.Envelope, what string, fn func(context.Context) error) (bool, error) {
	if s.cfg.Crash > 0 && s.rng.Float64() < s.cfg.Crash {
		err := drive.Unit(ctx, s.ids, 0, func(ctx context.Context) error {
			if err := fn(ctx); err != nil {
				return err
			}
			return errCrash
		})
		if !errors.Is(err, errCrash) && !errors.Is(err, saga.ErrStepWroteAndFailed) {
			return false, fmt.Errorf("%s %s %s: %w", what, env.Type, env.ID, err)
		}
		// Rolled back either way: the process goes down as drawn.
		s.note("crash before the commit of %s %s %s; engine restarted", what, env.Type, short(env.ID))
		s.engine, err = s.restart()
		return false, err
	}
	times := 1
	if s.cfg.Duplicate > 0 && s.rng.Float64() < s.cfg.Duplicate {
		times = 2
	}
	for range times {
		err := drive.Unit(ctx, s.ids, 0, fn)
		if errors.Is(err, saga.ErrStepWroteAndFailed) {
			s.note("%s %s %s: its step wrote and failed; the unit is rolled back and the message comes again", what, env.Type, short(env.ID))
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("%s %s %s: %w", what, env.Type, env.ID, err)
		}
	}
	s.note("%s %s %s (key %s) x%d", what, env.Type, short(env.ID), feed.KeyOf(feed.ByCorrelation, env), times)
	return true, nil
}

func short(id string) string { return id[max(0, len(id)-8):] }

// crashable runs fn, work the engine does on its own (Engine.RunParked:
// parked steps, retries, queued messages; Engine.FireDue: timers), each of
// whose units may crash before its commit (crashCommit). A crash ends the
// process: its context is cancelled and every later unit or append in fn
// fails, so fn stops, and the engine is then rebuilt from what the store
// holds, as after a delivery's crash. What fn returned after a crash is
// the dead process's and is dropped: the work left undone runs again
// after the restart. It reports how much fn moved and whether it crashed.
func (s *sim) crashable(ctx context.Context, what string, fn func(context.Context) (int, error)) (int, bool, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	s.armed, s.dead, s.die = true, false, cancel
	n, err := fn(cctx)
	crashed := s.dead
	s.armed, s.dead, s.die = false, false, nil
	if !crashed {
		if errors.Is(err, saga.ErrStepWroteAndFailed) {
			// A step that failed after writing through its unit had the
			// unit rolled back and runs again at the engine's next pass,
			// as the engine's own loop would run it: that is a move.
			s.note("%s: a step wrote and failed; its unit is rolled back and it runs again", what)
			return n + 1, false, nil
		}
		return n, false, err
	}
	s.note("crash before the commit of a unit of %s; engine restarted", what)
	s.engine, err = s.restart()
	return n, true, err
}

// restart builds the engine of the process that starts after a crash,
// from what the store holds. The definitions are built again
// (SimConfig.Sagas): whatever a handler kept in the dead process's memory
// (a map beside the state, a counter in a closure) is gone, as it would
// be, so a saga that needs it fails its invariants instead of passing
// every seed.
func (s *sim) restart() (*saga.Engine, error) {
	s.ecfg.Sagas = s.cfg.Sagas(s.ids)
	return saga.NewEngine(&s.ecfg)
}

// crashCommit reports whether a unit the engine commits crashes: never
// outside crashable, always once one crashed in it (the process is down),
// else with probability SimConfig.Crash, drawn from the seed's rng so a
// seed replays its crashes.
func (s *sim) crashCommit() bool {
	switch {
	case s.dead:
		return true
	case !s.armed || s.cfg.Crash <= 0 || s.rng.Float64() >= s.cfg.Crash:
		return false
	}
	s.dead = true
	s.die()
	return true
}

// publish hands a command to its handler over gochannel, with the unit in
// the message's context, and returns the handler's error.
func (s *sim) publish(ctx context.Context, env events.Envelope) error {
	msg, err := feed.MessageFromEnvelope(env)
	if err != nil {
		return err
	}
	var herr error
	msg.SetContext(context.WithValue(ctx, errSlot{}, &herr))
	if err := s.bus.Publish(command.Category(env.Type), msg); err != nil {
		return err
	}
	return herr
}

// advance applies the model's next n events.
func (s *sim) advance(ctx context.Context, m *simModel, n int) error {
	for ; n > 0 && m.next < len(s.all); n-- {
		env := s.all[m.next]
		if m.apply != nil {
			err := drive.Unit(ctx, s.ids, 0, func(ctx context.Context) error {
				eu, _ := events.UnitFromContext(ctx)
				u, ok := eu.(feed.Unit)
				if !ok {
					return errors.New("sagatest: the store's unit is not a feed.Unit")
				}
				return protect(func() error { return m.apply(ctx, u.Rows(), env) })
			})
			if err != nil {
				return fmt.Errorf("model %s on %s %s: %w", m.name, env.Type, env.ID, err)
			}
		}
		m.next++
		s.tracker.Advance(m.name, env.Token)
	}
	return nil
}

func (s *sim) modelsCaughtUp() bool {
	for _, m := range s.models {
		if m.next < len(s.all) {
			return false
		}
	}
	return true
}

// settle brings the run to its end: models are released and caught up,
// parked steps run, and the clock jumps to the next timer or retry of a
// failed step within the horizon. Their units may still crash (the engine
// is then restarted, which counts as a move). It reports whether anything
// moved.
func (s *sim) settle(ctx context.Context) (bool, error) {
	for _, m := range s.models {
		m.held = false
	}
	n, crashed, err := s.crashable(ctx, "the parked-step driver", s.engine.RunParked)
	if err != nil {
		return false, err
	}
	if n > 0 {
		s.note("settling: parked steps: %d instances moved", n)
	}
	if n > 0 || crashed {
		return true, s.read(ctx)
	}
	due, ok, err := nextDue(ctx, s.engine)
	if err != nil || !ok || due.After(DefaultStart.Add(s.cfg.Horizon)) {
		return false, err
	}
	if due.After(s.clock.Now()) {
		s.clock.Advance(due.Sub(s.clock.Now()))
	}
	if _, _, err := s.crashable(ctx, "the timers", s.engine.FireDue); err != nil {
		return false, err
	}
	s.note("settling: clock to %s", s.clock.Now().Format(time.TimeOnly))
	return true, s.read(ctx)
}

func (s *sim) check(ctx context.Context, final bool) error {
	if len(s.cfg.Invariants) == 0 {
		return nil
	}
	// Copies: an invariant that sorts or edits its view (an ordinary
	// thing to do) must not reorder the run's own log, which read models
	// apply by position.
	v := &SimView{
		Seed: s.seed, Final: final, Store: s.ids, Engine: s.engine,
		Commands: slices.Clone(s.sent), Events: slices.Clone(s.all), ctx: ctx, sagas: s.sagas,
	}
	for i, inv := range s.cfg.Invariants {
		if err := protect(func() error { return inv(v) }); err != nil {
			when := "during the run"
			if final {
				when = "at the end"
			}
			return fmt.Errorf("invariant %d failed %s: %w", i, when, err)
		}
	}
	return nil
}
