package saga_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/saga"
)

// errNoPanic is what panicOf returns when the call did not panic.
var errNoPanic = errors.New("the call did not panic")

// panicOf runs f and returns the error it panicked with.
func panicOf(f func()) (err error) {
	defer func() {
		switch r := recover().(type) {
		case nil:
		case error:
			err = r
		default:
			err = fmt.Errorf("panicked with a %T, not an error: %v", r, r)
		}
	}()
	f()
	return errNoPanic
}

type unregisteredEvent struct {
	ID string `json:"id"`
}

type orderEvent interface{ order() string }

func noop[E any](*saga.Step[orderState], E) error { return nil }

func byID[E any](E, events.Envelope) string { return "x" }

// TestDefinitionConfigIsValidated: every invalid saga.Config that the
// docs name is refused by NewSafely with an error that says what is wrong
// (and by New with a panic of the same error): a negative MaxAttempts,
// RetryBackoff, MaxRetryBackoff or StuckAfter, and an Upcast key out of
// 1 <= v < StateVersion or a nil upcaster. Negative values are random.
func TestDefinitionConfigIsValidated(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(randomSeed(t), 7))
	negInt := -1 - rng.IntN(1000)
	negDur := -time.Duration(1 + rng.Int64N(int64(time.Hour)))
	version := 2 + rng.IntN(5)
	up := func(b json.RawMessage) (json.RawMessage, error) { return b, nil }
	cases := []struct {
		name string
		cfg  saga.Config[orderState]
		want string
	}{
		{
			"negative MaxAttempts",
			saga.Config[orderState]{MaxAttempts: negInt},
			fmt.Sprintf(`saga "cfg": Config.MaxAttempts is %d, want >= 1 (or 0 for the default)`, negInt),
		},
		{
			"negative RetryBackoff",
			saga.Config[orderState]{RetryBackoff: negDur},
			`saga "cfg": Config.RetryBackoff and MaxRetryBackoff must not be negative`,
		},
		{
			"negative MaxRetryBackoff",
			saga.Config[orderState]{MaxRetryBackoff: negDur},
			`saga "cfg": Config.RetryBackoff and MaxRetryBackoff must not be negative`,
		},
		{
			"negative StuckAfter",
			saga.Config[orderState]{StuckAfter: negDur},
			fmt.Sprintf(`saga "cfg": Config.StuckAfter is %s, want > 0 (or 0 for the default)`, negDur),
		},
		{
			"Upcast key 0",
			saga.Config[orderState]{StateVersion: version, Upcast: map[int]func(json.RawMessage) (json.RawMessage, error){0: up}},
			fmt.Sprintf(`saga "cfg": Config.Upcast[0]: want 1 <= version < StateVersion (%d) and a non-nil func`, version),
		},
		{
			"Upcast key negative",
			saga.Config[orderState]{StateVersion: version, Upcast: map[int]func(json.RawMessage) (json.RawMessage, error){negInt: up}},
			fmt.Sprintf(`saga "cfg": Config.Upcast[%d]: want 1 <= version < StateVersion (%d)`, negInt, version),
		},
		{
			"Upcast key StateVersion",
			saga.Config[orderState]{StateVersion: version, Upcast: map[int]func(json.RawMessage) (json.RawMessage, error){version: up}},
			fmt.Sprintf(`saga "cfg": Config.Upcast[%d]: want 1 <= version < StateVersion (%d)`, version, version),
		},
		{
			"Upcast key past StateVersion",
			saga.Config[orderState]{StateVersion: version, Upcast: map[int]func(json.RawMessage) (json.RawMessage, error){version + 1 + rng.IntN(10): up}},
			fmt.Sprintf(`want 1 <= version < StateVersion (%d)`, version),
		},
		{
			"Upcast with the default StateVersion",
			saga.Config[orderState]{Upcast: map[int]func(json.RawMessage) (json.RawMessage, error){1: up}},
			`saga "cfg": Config.Upcast[1]: want 1 <= version < StateVersion (1)`,
		},
		{
			"nil upcaster",
			saga.Config[orderState]{StateVersion: version, Upcast: map[int]func(json.RawMessage) (json.RawMessage, error){1: nil}},
			fmt.Sprintf(`saga "cfg": Config.Upcast[1]: want 1 <= version < StateVersion (%d) and a non-nil func`, version),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s, err := saga.NewSafely("cfg", &c.cfg)
			require.ErrorContains(t, err, c.want)
			require.Nil(t, s)
			err = panicOf(func() { saga.New("cfg", &c.cfg) })
			require.NotErrorIs(t, err, errNoPanic, "New panics on what NewSafely refuses")
			require.ErrorContains(t, err, c.want)
		})
	}
	// The edges of what is valid are accepted.
	for _, cfg := range []*saga.Config[orderState]{
		nil, {}, {MaxAttempts: 1, StateVersion: version, Upcast: map[int]func(json.RawMessage) (json.RawMessage, error){1: up, version - 1: up}},
	} {
		_, err := saga.NewSafely("cfg", cfg)
		require.NoError(t, err)
	}
}

// TestHandlerRegistrationIsValidated: StartOnSafely, OnSafely and
// OnTimeoutSafely refuse each documented programmer error with an error
// that says what to do, and StartOn, On and OnTimeout panic with it: an
// event type that is a pointer or an interface, saga.Timeout passed to On
// (timeouts are OnTimeout's), a second handler for an event type or a
// timer name, Reads(""), a bad timer name, a nil saga, correlation or
// handler. A refused handler is not registered: the same registration,
// made valid, then succeeds.
func TestHandlerRegistrationIsValidated(t *testing.T) {
	t.Parallel()
	type reg struct {
		safe func(s *saga.Saga[orderState]) error
		must func(s *saga.Saga[orderState])
	}
	on := func(f func(s *saga.Saga[orderState], opts ...saga.Option) error, must func(s *saga.Saga[orderState], opts ...saga.Option), opts ...saga.Option) reg {
		return reg{safe: func(s *saga.Saga[orderState]) error { return f(s, opts...) }, must: func(s *saga.Saga[orderState]) { must(s, opts...) }}
	}
	onPing := func(s *saga.Saga[orderState], opts ...saga.Option) error {
		return saga.OnSafely(s, byOrder[Ping], noop[Ping], opts...)
	}
	mustOnPing := func(s *saga.Saga[orderState], opts ...saga.Option) { saga.On(s, byOrder[Ping], noop[Ping], opts...) }
	timeoutT := func(s *saga.Saga[orderState], opts ...saga.Option) error {
		return saga.OnTimeoutSafely(s, "t", noop[saga.Timeout], opts...)
	}
	mustTimeoutT := func(s *saga.Saga[orderState], opts ...saga.Option) {
		saga.OnTimeout(s, "t", noop[saga.Timeout], opts...)
	}

	cases := []struct {
		name string
		// before registers what the saga already has; nil for nothing.
		before func(s *saga.Saga[orderState])
		bad    reg
		want   string
		// fixed, when set, is the bad registration made valid, which must
		// then succeed.
		fixed func(s *saga.Saga[orderState]) error
	}{
		{
			name: "On a pointer event type", bad: reg{
				safe: func(s *saga.Saga[orderState]) error {
					return saga.OnSafely(s, byID[*OrderPlaced], noop[*OrderPlaced])
				},
				must: func(s *saga.Saga[orderState]) { saga.On(s, byID[*OrderPlaced], noop[*OrderPlaced]) },
			}, want: `saga "handlers": handler for *saga_test.OrderPlaced: use the registered event type itself (not an interface or pointer)`,
			fixed: func(s *saga.Saga[orderState]) error { return saga.OnSafely(s, byOrder[OrderPlaced], noop[OrderPlaced]) },
		},
		{
			name: "StartOn a pointer event type", bad: reg{
				safe: func(s *saga.Saga[orderState]) error {
					return saga.StartOnSafely(s, byID[*Ping], noop[*Ping])
				},
				must: func(s *saga.Saga[orderState]) { saga.StartOn(s, byID[*Ping], noop[*Ping]) },
			}, want: `saga "handlers": handler for *saga_test.Ping: use the registered event type itself (not an interface or pointer)`,
			fixed: func(s *saga.Saga[orderState]) error { return saga.StartOnSafely(s, byOrder[Ping], noop[Ping]) },
		},
		{name: "On an interface event type", bad: reg{
			safe: func(s *saga.Saga[orderState]) error {
				return saga.OnSafely(s, byID[orderEvent], noop[orderEvent])
			},
			must: func(s *saga.Saga[orderState]) { saga.On(s, byID[orderEvent], noop[orderEvent]) },
		}, want: `saga "handlers": handler for saga_test.orderEvent: use the registered event type itself (not an interface or pointer)`},
		{name: "StartOn any", bad: reg{
			safe: func(s *saga.Saga[orderState]) error {
				return saga.StartOnSafely(s, byID[any], noop[any])
			},
			must: func(s *saga.Saga[orderState]) { saga.StartOn(s, byID[any], noop[any]) },
		}, want: `use the registered event type itself (not an interface or pointer)`},
		{
			name: "On saga.Timeout", bad: reg{
				safe: func(s *saga.Saga[orderState]) error {
					return saga.OnSafely(s, byID[saga.Timeout], noop[saga.Timeout])
				},
				must: func(s *saga.Saga[orderState]) { saga.On(s, byID[saga.Timeout], noop[saga.Timeout]) },
			}, want: `saga "handlers": handle timeouts with saga.OnTimeout`,
			fixed: func(s *saga.Saga[orderState]) error { return saga.OnTimeoutSafely(s, "x", noop[saga.Timeout]) },
		},
		{name: "StartOn saga.Timeout", bad: reg{
			safe: func(s *saga.Saga[orderState]) error {
				return saga.StartOnSafely(s, byID[saga.Timeout], noop[saga.Timeout])
			},
			must: func(s *saga.Saga[orderState]) { saga.StartOn(s, byID[saga.Timeout], noop[saga.Timeout]) },
		}, want: `saga "handlers": handle timeouts with saga.OnTimeout`},
		{
			name: "a second OnTimeout of one name", before: func(s *saga.Saga[orderState]) { mustTimeoutT(s) },
			bad:  on(timeoutT, mustTimeoutT),
			want: `saga "handlers" handles timeout "t" twice (one OnTimeout per name)`,
		},
		{name: "a second handler of one event type", before: func(s *saga.Saga[orderState]) {
			saga.StartOn(s, byOrder[Ping], noop[Ping])
		}, bad: on(onPing, mustOnPing), want: `saga "handlers" handles saga_test.Ping twice (one StartOn or On per event type)`},
		{
			name: "On with Reads of an empty name", bad: on(onPing, mustOnPing, saga.Reads(summaryModel, "")),
			want:  `saga "handlers": saga.Reads with an empty read-model name`,
			fixed: func(s *saga.Saga[orderState]) error { return onPing(s, saga.Reads(summaryModel)) },
		},
		{name: "StartOn with Reads of an empty name", bad: reg{
			safe: func(s *saga.Saga[orderState]) error {
				return saga.StartOnSafely(s, byOrder[OrderPlaced], noop[OrderPlaced], saga.Reads(""))
			},
			must: func(s *saga.Saga[orderState]) {
				saga.StartOn(s, byOrder[OrderPlaced], noop[OrderPlaced], saga.Reads(""))
			},
		}, want: `saga "handlers": saga.Reads with an empty read-model name`},
		{
			name: "OnTimeout with Reads of an empty name", bad: on(timeoutT, mustTimeoutT, saga.Reads("")),
			want:  `saga "handlers": saga.Reads with an empty read-model name`,
			fixed: func(s *saga.Saga[orderState]) error { return timeoutT(s) },
		},
		{name: "OnTimeout with an empty name", bad: reg{
			safe: func(s *saga.Saga[orderState]) error { return saga.OnTimeoutSafely(s, "", noop[saga.Timeout]) },
			must: func(s *saga.Saga[orderState]) { saga.OnTimeout(s, "", noop[saga.Timeout]) },
		}, want: `saga "handlers": OnTimeout(""): empty timer name`},
		{name: "OnTimeout with a nil handler", bad: reg{
			safe: func(s *saga.Saga[orderState]) error { return saga.OnTimeoutSafely(s, "t", nil) },
			must: func(s *saga.Saga[orderState]) { saga.OnTimeout(s, "t", nil) },
		}, want: `saga "handlers": OnTimeout("t"): nil handler`},
		{name: "On with a nil correlation", bad: reg{
			safe: func(s *saga.Saga[orderState]) error { return saga.OnSafely(s, nil, noop[Ping]) },
			must: func(s *saga.Saga[orderState]) { saga.On(s, nil, noop[Ping]) },
		}, want: `saga "handlers": handler for saga_test.Ping: nil correlation function`},
		{name: "On with a nil handler", bad: reg{
			safe: func(s *saga.Saga[orderState]) error { return saga.OnSafely[orderState, Ping](s, byOrder[Ping], nil) },
			must: func(s *saga.Saga[orderState]) { saga.On[orderState, Ping](s, byOrder[Ping], nil) },
		}, want: `saga "handlers": handler for saga_test.Ping: nil handler`},
		{name: "On a nil saga", bad: reg{
			safe: func(*saga.Saga[orderState]) error { return saga.OnSafely(nil, byOrder[Ping], noop[Ping]) },
			must: func(*saga.Saga[orderState]) { saga.On(nil, byOrder[Ping], noop[Ping]) },
		}, want: `saga: handler for saga_test.Ping: nil saga (define it with saga.New)`},
		{name: "OnTimeout on a nil saga", bad: reg{
			safe: func(*saga.Saga[orderState]) error { return saga.OnTimeoutSafely(nil, "t", noop[saga.Timeout]) },
			must: func(*saga.Saga[orderState]) { saga.OnTimeout(nil, "t", noop[saga.Timeout]) },
		}, want: `saga: OnTimeout("t"): nil saga`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			s := saga.New[orderState]("handlers", nil)
			if c.before != nil {
				c.before(s)
			}
			require.ErrorContains(t, c.bad.safe(s), c.want)
			err := panicOf(func() { c.bad.must(s) })
			require.NotErrorIs(t, err, errNoPanic, "the panicking form panics on what the Safely form refuses")
			require.ErrorContains(t, err, c.want)
			if c.fixed != nil {
				require.NoError(t, c.fixed(s), "the refused handler was not registered")
			}
		})
	}
}

// TestEngineConfigIsValidated: NewEngine refuses every documented invalid
// EngineConfig with an error naming what to fix, and builds no engine: a
// nil Store, no Sagas, a negative duration, a positive Retention under
// MinRetention, a negative ConflictRetries or DrainPerTurn, a nil definition, two
// definitions with one name (one saga's handlers would otherwise be
// dropped), saga.TimerFired registered under another name, a definition
// with no handlers or no StartOn, a handled type the registry does not
// know, and Reads without a Tracker. Values are random where the rule is
// general.
func TestEngineConfigIsValidated(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(randomSeed(t), 11))
	negDur := -time.Duration(1 + rng.Int64N(int64(time.Hour)))
	shortRetention := time.Duration(1 + rng.Int64N(int64(saga.MinRetention)-1))
	negInt := -1 - rng.IntN(1000)
	// named returns a complete definition: it starts on OrderPlaced, and
	// with extra also acts on Ping.
	named := func(name string, extra bool) *saga.Saga[orderState] {
		s := saga.New[orderState](name, nil)
		saga.StartOn(s, byOrder[OrderPlaced], noop[OrderPlaced])
		if extra {
			saga.On(s, byOrder[Ping], noop[Ping])
		}
		return s
	}
	dupName := randomName(rng)
	cases := []struct {
		name string
		// cfg adjusts a valid config on a fresh in-memory store (the
		// registry of the order workflow) running named("valid").
		cfg  func(c *saga.EngineConfig)
		reg  func(reg *events.Registry)
		nil  bool // NewEngine(nil)
		want string
	}{
		{name: "nil config", nil: true, want: "saga: EngineConfig.Store is nil (pass a memstore.Store or a pgstore.Store)"},
		{
			name: "nil Store", cfg: func(c *saga.EngineConfig) { c.Store = nil },
			want: "saga: EngineConfig.Store is nil (pass a memstore.Store or a pgstore.Store)",
		},
		{
			name: "no Sagas", cfg: func(c *saga.EngineConfig) { c.Sagas = nil },
			want: "saga: EngineConfig.Sagas is empty (define sagas with saga.New)",
		},
		{
			name: "empty Sagas", cfg: func(c *saga.EngineConfig) { c.Sagas = []saga.Definition{} },
			want: "saga: EngineConfig.Sagas is empty",
		},
		{
			name: "negative GateTimeout", cfg: func(c *saga.EngineConfig) { c.GateTimeout = negDur },
			want: "saga: EngineConfig durations must not be negative",
		},
		{
			name: "negative SweepInterval", cfg: func(c *saga.EngineConfig) { c.SweepInterval = negDur },
			want: "saga: EngineConfig durations must not be negative",
		},
		{
			name: "negative TimerSafetyInterval", cfg: func(c *saga.EngineConfig) { c.TimerSafetyInterval = negDur },
			want: "saga: EngineConfig durations must not be negative",
		},
		{
			name: "Retention under MinRetention", cfg: func(c *saga.EngineConfig) { c.Retention = shortRetention },
			want: fmt.Sprintf("saga: EngineConfig.Retention is %s, want at least %s (or 0 for the default, negative to keep everything)", shortRetention, saga.MinRetention),
		},
		{
			name: "negative ConflictRetries", cfg: func(c *saga.EngineConfig) { c.ConflictRetries = negInt },
			want: fmt.Sprintf("saga: EngineConfig.ConflictRetries is %d, want >= 1 (or 0 for the default)", negInt),
		},
		{
			name: "negative DrainPerTurn", cfg: func(c *saga.EngineConfig) { c.DrainPerTurn = negInt },
			want: fmt.Sprintf("saga: EngineConfig.DrainPerTurn is %d, want >= 1 (or 0 for the default)", negInt),
		},
		{
			name: "nil definition", cfg: func(c *saga.EngineConfig) { c.Sagas = append(c.Sagas, nil) },
			want: "saga: EngineConfig.Sagas holds a nil definition",
		},
		{
			name: "typed nil definition", cfg: func(c *saga.EngineConfig) {
				var never *saga.Saga[orderState] // declared, never assigned
				c.Sagas = append(c.Sagas, never)
			},
			want: "saga: EngineConfig.Sagas holds a nil definition",
		},
		{name: "two definitions with one name", cfg: func(c *saga.EngineConfig) {
			c.Sagas = []saga.Definition{named(dupName, false), named("valid", false), named(dupName, true)}
		}, want: fmt.Sprintf("saga: two definitions named %q", dupName)},
		{name: "one definition twice", cfg: func(c *saga.EngineConfig) {
			d := named(dupName, true)
			c.Sagas = []saga.Definition{d, d}
		}, want: fmt.Sprintf("saga: two definitions named %q", dupName)},
		{name: "TimerFired registered under another name", reg: func(reg *events.Registry) {
			events.Register[saga.TimerFired](reg, "timers.fired")
		}, want: fmt.Sprintf("saga: saga.TimerFired is registered as %q, want %q", "timers.fired", saga.TimerFiredType)},
		{name: "a definition with no handlers", cfg: func(c *saga.EngineConfig) {
			c.Sagas = append(c.Sagas, saga.New[orderState]("empty", nil))
		}, want: `saga: saga "empty" has no handlers (add them with saga.StartOn, saga.On and saga.OnTimeout)`},
		{name: "a definition with no StartOn", cfg: func(c *saga.EngineConfig) {
			s := saga.New[orderState]("no_start", nil)
			saga.On(s, byOrder[Ping], noop[Ping])
			c.Sagas = append(c.Sagas, s)
		}, want: `saga: saga "no_start" has no StartOn handler, so no instance can ever start`},
		{name: "an unregistered event type", cfg: func(c *saga.EngineConfig) {
			s := saga.New[orderState]("unregistered", nil)
			saga.StartOn(s, func(e unregisteredEvent, _ events.Envelope) string { return e.ID }, noop[unregisteredEvent])
			c.Sagas = append(c.Sagas, s)
		}, want: `saga: saga "unregistered" handles saga_test.unregisteredEvent: `},
		{name: "Reads without a Tracker", cfg: func(c *saga.EngineConfig) {
			s := saga.New[orderState]("reads", nil)
			saga.StartOn(s, byOrder[OrderPlaced], noop[OrderPlaced], saga.Reads(summaryModel))
			c.Sagas = append(c.Sagas, s)
		}, want: "saga: a handler declares saga.Reads but EngineConfig.Tracker is nil"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			reg := registry()
			if c.reg != nil {
				c.reg(reg)
			}
			ms, err := memstore.New(&memstore.Config{Registry: reg})
			require.NoError(t, err)
			t.Cleanup(func() { _ = ms.Close() })
			cfg := &saga.EngineConfig{Store: ms, Sagas: []saga.Definition{named("valid", true)}}
			if c.cfg != nil {
				c.cfg(cfg)
			}
			if c.nil {
				cfg = nil
			}
			eng, err := saga.NewEngine(cfg)
			require.ErrorContains(t, err, c.want)
			require.Nil(t, eng)
		})
	}
	// The valid config the cases start from, and the edges of what is
	// valid, build an engine: the same saga types under distinct names,
	// Retention negative or at MinRetention, TimerFired already
	// registered under its own name.
	for i, adjust := range []func(c *saga.EngineConfig){
		func(*saga.EngineConfig) {},
		func(c *saga.EngineConfig) {
			c.Sagas = []saga.Definition{named(dupName, true), named(dupName+"2", true)}
		},
		func(c *saga.EngineConfig) { c.Retention = negDur },
		func(c *saga.EngineConfig) { c.Retention = saga.MinRetention },
		func(c *saga.EngineConfig) { events.Register[saga.TimerFired](c.Store.Registry(), saga.TimerFiredType) },
	} {
		ms, err := memstore.New(&memstore.Config{Registry: registry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = ms.Close() })
		cfg := &saga.EngineConfig{Store: ms, Sagas: []saga.Definition{named("valid", true)}}
		adjust(cfg)
		_, err = saga.NewEngine(cfg)
		require.NoError(t, err, "valid config %d", i)
	}
}

// randomName returns a random valid saga name of up to 20 bytes.
func randomName(rng *rand.Rand) string {
	const first, rest = "abcdefghijklmnopqrstuvwxyz0123456789", "abcdefghijklmnopqrstuvwxyz0123456789_.-"
	b := []byte{first[rng.IntN(len(first))]}
	for range rng.IntN(20) {
		b = append(b, rest[rng.IntN(len(rest))])
	}
	return string(b)
}
