package sagatest_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

type flagState struct {
	Flag bool `json:"flag"`
}

// TestSimulateChecksInvariantsWhileSettling: invariants are checked "after
// every action", and the actions the simulation takes while settling (a
// parked or retried step run, the clock jumped to a timer) are actions. A
// step, retried an hour after its first run, raises a flag that a timer a
// minute later lowers again: the flag is up only between two settling
// actions, until the timer's event is delivered. An invariant forbidding
// it fails on every seed, also on those whose next action after the timer
// fired delivers its event at once.
func TestSimulateChecksInvariantsWhileSettling(t *testing.T) {
	t.Parallel()
	raised := errors.New("the flag is up")
	var missed []uint64
	for seed := range uint64(20) {
		cfg := &sagatest.SimConfig{
			Registry: shippingRegistry(),
			Sagas: func(saga.Store) []saga.Definition {
				runs := 0
				s := saga.New[flagState]("flag", nil)
				saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
					func(st *saga.Step[flagState], _ Placed) error {
						if runs++; runs == 1 {
							return saga.RetryAfter(time.Hour)
						}
						st.State().Flag = true
						st.Schedule("lower", time.Minute)
						return nil
					})
				saga.OnTimeout(s, "lower", func(st *saga.Step[flagState], _ saga.Timeout) error {
					st.State().Flag = false
					return nil
				})
				return []saga.Definition{s}
			},
			Events: []sagatest.Event{{Stream: "order-1", Data: Placed{ID: "1"}}},
			Crash:  -1, Duplicate: -1,
			Invariants: []sagatest.Invariant{func(v *sagatest.SimView) error {
				list, err := v.Instances("flag")
				if err != nil {
					return err
				}
				for _, in := range list {
					if strings.Contains(string(in.State), `"flag":true`) {
						return raised
					}
				}
				return nil
			}},
		}
		err := sagatest.SimulateSeed(t.Context(), cfg, seed)
		if err == nil {
			missed = append(missed, seed)
			continue
		}
		require.ErrorIs(t, err, raised, "seed %d", seed)
		require.ErrorContains(t, err, "invariant 0 failed during the run", "seed %d", seed)
	}
	require.Empty(t, missed, "the flag was up in every seed, but these seeds passed")
}

// crashScenario is a step that asks to run again an hour later, and then
// schedules a timer whose timeout completes the instance. runs counts the
// step's runs at or after the hour (the retried step) and timeouts the
// timeout handler's runs, over the whole seed: a crash does not undo them.
type crashScenario struct {
	runs, timeouts int
}

func (c *crashScenario) config(crash float64, inv ...sagatest.Invariant) *sagatest.SimConfig {
	return &sagatest.SimConfig{
		Registry: shippingRegistry(),
		Sagas: func(saga.Store) []saga.Definition {
			s := saga.New[struct{}]("crashy", nil)
			saga.StartOn(s, func(e Placed, _ events.Envelope) string { return e.ID },
				func(st *saga.Step[struct{}], _ Placed) error {
					if st.Now().Before(sagatest.DefaultStart.Add(time.Hour)) {
						return saga.RetryAfter(time.Hour)
					}
					c.runs++
					st.Schedule("done", time.Minute)
					return nil
				})
			saga.OnTimeout(s, "done", func(st *saga.Step[struct{}], _ saga.Timeout) error {
				c.timeouts++
				st.Complete()
				return nil
			})
			return []saga.Definition{s}
		},
		Events:     []sagatest.Event{{Stream: "order-1", Data: Placed{ID: "1"}}},
		Crash:      crash,
		Duplicate:  -1,
		Invariants: inv,
	}
}

// TestSimulateCrashesParkedStepsAndTimers: SimConfig.Crash crashes "between
// any two steps", so also the units the engine commits itself: a step run
// by the parked-step driver (here a retried one) and the firing of a
// timer. Over a range of seeds the retried step runs again after a crash
// lost its first run's commit, timers' units crash too, and every seed
// still ends with the instance completed; a seed replays its crashes
// exactly.
func TestSimulateCrashesParkedStepsAndTimers(t *testing.T) {
	t.Parallel()
	completed := func(v *sagatest.SimView) error {
		if !v.Final {
			return nil
		}
		list, err := v.Instances("crashy")
		if err != nil || len(list) != 1 {
			return fmt.Errorf("instances %v: %w", list, err)
		}
		if list[0].Status != saga.StatusCompleted {
			return fmt.Errorf("the instance is %s", list[0].Status)
		}
		return errStop // to see the trace
	}
	run := func(seed uint64) (crashScenario, string) {
		var c crashScenario
		err := sagatest.SimulateSeed(t.Context(), c.config(0.5, completed), seed)
		require.ErrorIs(t, err, errStop, "seed %d ends with the instance completed", seed)
		// Event ids are drawn afresh in every run.
		return c, shortID.ReplaceAllString(err.Error(), "<id>")
	}
	rerun, timerCrashes := 0, 0
	for seed := range uint64(40) {
		c, trace := run(seed)
		require.Positive(t, c.runs, "seed %d", seed)
		if c.runs > 1 {
			rerun++
		}
		timerCrashes += strings.Count(trace, "crash before the commit of a unit of the timers")
		if seed < 5 {
			again, retrace := run(seed)
			require.Equal(t, c, again, "seed %d replays the same runs", seed)
			require.Equal(t, trace, retrace, "seed %d replays the same actions", seed)
		}
	}
	require.Positive(t, rerun, "a crash made the retried step (run by the parked-step driver) run again")
	require.Positive(t, timerCrashes, "a timer's unit crashed")

	// Crash < 0 still turns every crash off.
	for seed := range uint64(10) {
		var c crashScenario
		require.NoError(t, sagatest.SimulateSeed(t.Context(), c.config(-1), seed))
		require.Equal(t, crashScenario{runs: 1, timeouts: 1}, c, "seed %d", seed)
	}
}

// TestSimulateReplayLineNamesThePackage: a failing seed prints a command
// that replays it: it names the package under test by import path, so it
// runs from the module root (or anywhere in the module), where a bare
// "go test -run … -seed N" tests the root package, which has no -seed
// flag. The rest of the line is what the test binary takes: run with it,
// only that seed runs (TestSeedFlagReplaysAFailure replays each).
func TestSimulateReplayLineNamesThePackage(t *testing.T) {
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.v", "-test.run=^TestReplayChild$")
	cmd.Env = append(os.Environ(), replayChild+"=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the simulation fails:\n%s", out)
	lines := regexp.MustCompile(`replay: (.*)`).FindAllStringSubmatch(string(out), -1)
	require.NotEmpty(t, lines, "%s", out)
	want := regexp.MustCompile(`^go test github\.com/converge-es/converge/saga/sagatest -run '\^TestReplayChild\$/[^']+/\^seed=(\d+)\$' -seed (\d+)$`)
	for _, l := range lines {
		m := want.FindStringSubmatch(l[1])
		require.NotNil(t, m, "the replay line names the package: %q", l[1])
		require.Equal(t, m[1], m[2], "the pattern and -seed name one seed")
	}
}

// panicChild, set in the environment, makes TestPanicChild run: only in
// the process TestSimulateReportsAPanic starts.
const panicChild = "SAGATEST_PANIC_CHILD"

// TestPanicChild runs simulations whose invariant panics on seed 1 and
// whose read model panics on every seed.
func TestPanicChild(t *testing.T) {
	if os.Getenv(panicChild) == "" {
		t.Skip("run by TestSimulateReportsAPanic in a process of its own")
	}
	t.Run("invariant", func(t *testing.T) {
		cfg := shippingConfig(func(v *sagatest.SimView) error {
			if v.Seed == 1 && len(v.Commands) > 0 {
				panic(fmt.Sprintf("invariant panics on seed %d", v.Seed))
			}
			return nil
		})
		cfg.Seeds = 3
		sagatest.Simulate(t, cfg)
	})
	t.Run("model", func(t *testing.T) {
		cfg := shippingConfig()
		cfg.Seeds = 2
		cfg.Models = map[string]sagatest.Model{"broken": func(context.Context, feed.Rows, events.Envelope) error {
			panic(errors.New("the model is broken"))
		}}
		sagatest.Simulate(t, cfg)
	})
}

// TestSimulateReportsAPanic: an invariant or a read model that panics
// fails its seed like an invariant that fails: with the panic's value and
// where it happened, the actions that led there and the replay command,
// and the other seeds still run (the test binary does not die).
func TestSimulateReportsAPanic(t *testing.T) {
	t.Parallel()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.v", "-test.run=^TestPanicChild$")
	cmd.Env = append(os.Environ(), panicChild+"=1")
	b, err := cmd.CombinedOutput()
	out := string(b)
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the simulation fails:\n%s", out)
	require.Contains(t, out, "--- PASS: TestPanicChild/invariant/seed=0 ")
	require.Contains(t, out, "--- FAIL: TestPanicChild/invariant/seed=1 ")
	require.Contains(t, out, "--- PASS: TestPanicChild/invariant/seed=2 ", "the seeds after the panic run")
	require.Contains(t, out, "--- FAIL: TestPanicChild/model/seed=0 ")
	require.Contains(t, out, "--- FAIL: TestPanicChild/model/seed=1 ")
	require.Contains(t, out, "simulation seed 1: invariant 0 failed during the run: panic: invariant panics on seed 1")
	require.Contains(t, out, "replay: go test github.com/converge-es/converge/saga/sagatest -run '^TestPanicChild$/^invariant$/^seed=1$' -seed 1")
	require.Contains(t, out, "model broken on order.placed")
	require.Contains(t, out, "panic: the model is broken")
	require.Contains(t, out, "replay: go test github.com/converge-es/converge/saga/sagatest -run '^TestPanicChild$/^model$/^seed=1$' -seed 1")
	require.Contains(t, out, "simulate_promises_test.go", "the panic's stack says where")
	require.Contains(t, out, "last actions:")
}

// TestSimulateSeedReturnsAPanic: SimulateSeed returns a panic in an
// invariant or a read model as the seed's error, the panic's value
// wrapped when it is an error.
func TestSimulateSeedReturnsAPanic(t *testing.T) {
	t.Parallel()
	boom := errors.New("boom")
	cfg := shippingConfig(func(*sagatest.SimView) error { panic(boom) })
	err := sagatest.SimulateSeed(t.Context(), cfg, 4)
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "simulation seed 4: invariant 0 failed during the run: panic: boom")

	cfg = shippingConfig()
	cfg.Models = map[string]sagatest.Model{"broken": func(context.Context, feed.Rows, events.Envelope) error { panic("no model") }}
	err = sagatest.SimulateSeed(t.Context(), cfg, 4)
	require.ErrorContains(t, err, "simulation seed 4: model broken on order.placed")
	require.ErrorContains(t, err, "panic: no model")
	require.ErrorContains(t, err, "last actions:")
}
