package sagatest_test

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga/sagatest"
)

// replayChild, set in the environment, makes TestReplayChild run: only in
// the processes TestSeedFlagReplaysAFailure starts.
const replayChild = "SAGATEST_REPLAY_CHILD"

// TestReplayChild runs a simulation whose invariant fails on some seeds
// only (those whose schedule ships another order first).
func TestReplayChild(t *testing.T) {
	if os.Getenv(replayChild) == "" {
		t.Skip("run by TestSeedFlagReplaysAFailure in a process of its own")
	}
	cfg := shippingConfig(func(v *sagatest.SimView) error {
		if v.Final && len(v.Commands) > 0 && v.Commands[0].Correlation != "0" {
			return fmt.Errorf("order %s shipped first", v.Commands[0].Correlation)
		}
		return nil
	})
	cfg.Seeds = 12
	// A name the test runner reads as a regular expression: the printed
	// command must still run exactly this subtest.
	t.Run("orders+payments (eu)", func(t *testing.T) { sagatest.Simulate(t, cfg) })
}

// childName is TestReplayChild's subtest as t.Name() writes it.
const childName = "TestReplayChild/orders+payments_(eu)/seed="

// shortID is how a failure's trace names an event: the end of its id.
var shortID = regexp.MustCompile(`\b[0-9a-f]{8}\b`)

// replayLine is the command a failing seed prints.
var replayLine = regexp.MustCompile(`replay: go test \S+ -run '([^']+)' -seed (\d+)`)

// TestSeedFlagReplaysAFailure runs a simulation in a test process of its
// own, takes a failing seed's replay command from its output, and runs
// that: only that seed runs (the -seed flag), and it fails with the same
// error and the same actions leading to it (the same deliveries, faults
// and clock jumps, of events whose ids the store draws afresh).
func TestSeedFlagReplaysAFailure(t *testing.T) {
	t.Parallel()
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), os.Args[0], append([]string{"-test.v"}, args...)...)
		cmd.Env = append(os.Environ(), replayChild+"=1")
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "the simulation fails:\n%s", out)
		return string(out)
	}
	failure := func(out, seed string) string {
		t.Helper()
		_, rest, ok := strings.Cut(out, "sagatest: simulation seed "+seed+":")
		require.True(t, ok, "seed %s failed:\n%s", seed, out)
		msg, _, ok := strings.Cut(rest, "replay:")
		require.True(t, ok)
		// Event ids are drawn afresh by the store in each run: number
		// them in order of appearance, so the same event keeps one name.
		ids := map[string]string{}
		return shortID.ReplaceAllStringFunc(msg, func(id string) string {
			if _, ok := ids[id]; !ok {
				ids[id] = fmt.Sprint("event#", len(ids))
			}
			return ids[id]
		})
	}
	all := run("-test.run=^TestReplayChild$")
	require.Contains(t, all, "--- PASS: "+childName, "some seeds pass: the failure depends on the schedule")
	lines := replayLine.FindAllStringSubmatch(all, -1)
	require.NotEmpty(t, lines, "some seeds fail:\n%s", all)
	for _, l := range lines {
		name, seed := l[1], l[2]
		again := run("-test.run="+name, "-seed", seed)
		require.Equal(t, 1, strings.Count(again, "=== RUN   "+childName), "only seed %s runs:\n%s", seed, again)
		require.Contains(t, again, "--- FAIL: "+childName+seed+" ")
		require.Equal(t, failure(all, seed), failure(again, seed), "seed %s replays the same failure", seed)
	}
}
