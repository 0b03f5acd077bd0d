package sagatest_test

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga/sagatest"
)

const twoSimsChild = "SAGATEST_TWO_SIMULATIONS_CHILD"

// TestTwoSimulationsChild runs two simulations in one test, as a test
// that checks a small and a large scenario might: the first passes on
// every seed, the second fails on seed 100 only.
func TestTwoSimulationsChild(t *testing.T) {
	if os.Getenv(twoSimsChild) == "" {
		t.Skip("run by TestReplayOfTheSecondOfTwoSimulations")
	}
	small := shippingConfig()
	small.Seeds = 3 // seeds 0, 1, 2
	sagatest.Simulate(t, small)
	large := shippingConfig(func(v *sagatest.SimView) error {
		if v.Final && v.Seed == 100 {
			return errors.New("the large scenario fails on seed 100")
		}
		return nil
	})
	large.FirstSeed, large.Seeds = 100, 2 // seeds 100, 101
	sagatest.Simulate(t, large)
}

// TestReplayOfTheSecondOfTwoSimulations: the printed replay command runs
// the seed that failed, in the simulation that failed, and fails again
// (it ran the seed in the first simulation, under the name the failing
// subtest had, and passed). A -seed no simulation of the test includes
// fails the test rather than run nothing.
func TestReplayOfTheSecondOfTwoSimulations(t *testing.T) {
	run := func(args ...string) (string, error) {
		cmd := exec.CommandContext(t.Context(), os.Args[0], append([]string{"-test.v"}, args...)...)
		cmd.Env = append(os.Environ(), twoSimsChild+"=1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	all, err := run("-test.run=^TestTwoSimulationsChild$")
	require.Error(t, err, "seed 100 of the second simulation fails:\n%s", all)
	m := replayLine.FindStringSubmatch(all)
	require.NotNil(t, m, all)
	t.Logf("printed: %s", m[0])
	again, err := run("-test.run="+m[1], "-seed", m[2])
	t.Logf("replay output:\n%s", again)
	require.Error(t, err, "the printed replay command runs the failing seed and fails again")
	require.True(t, strings.Contains(again, "the large scenario fails on seed 100"))

	none, err := run("-test.run=^TestTwoSimulationsChild$", "-seed", "50")
	require.Error(t, err, "a seed outside every simulation's seeds runs nothing, and fails:\n%s", none)
	require.Contains(t, none, "-seed 50 is outside the seeds of every simulation TestTwoSimulationsChild runs")
}
