package main

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
)

// unreachable is a database URL nothing answers at: a command that gets
// as far as connecting fails saying so, at once.
const unreachable = "postgres://nobody@127.0.0.1:1/none?connect_timeout=5"

// numericFlag is a flag whose values the command checks against a range
// before it connects.
type numericFlag struct {
	args []string // the command, and any flags it needs besides
	flag string
	kind string  // "int", "duration" or "float"
	lo   float64 // the least valid value (durations in nanoseconds)
	hi   float64 // the greatest, or +Inf
	// open excludes lo itself: durations that must be positive.
	open bool
	// zero admits 0 besides lo to hi: a flag whose 0 means its default.
	zero bool
}

func (f numericFlag) valid(v float64) bool {
	if f.zero && v == 0 {
		return true
	}
	if f.open && v == f.lo {
		return false
	}
	return v >= f.lo && v <= f.hi
}

// format writes v as the user types it and as the error quotes it.
func (f numericFlag) format(v float64) string {
	switch f.kind {
	case "int":
		return strconv.FormatInt(int64(v), 10)
	case "duration":
		return time.Duration(v).String()
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}

// sample draws a value near a bound, or anywhere over several orders of
// magnitude on either side of zero.
func (f numericFlag) sample(rng *rand.Rand) float64 {
	bounds := []float64{f.lo, 0}
	if !math.IsInf(f.hi, 1) {
		bounds = append(bounds, f.hi)
	}
	var v float64
	switch rng.IntN(3) {
	case 0:
		v = bounds[rng.IntN(len(bounds))] + float64(rng.IntN(3)-1)
	default:
		scale := math.Pow(10, float64(rng.IntN(13)))
		v = (rng.Float64()*2 - 1) * scale
	}
	if f.kind == "float" {
		return v
	}
	return math.Round(v)
}

// TestNumericFlagsOverRandomValues: every numeric flag a command checks
// refuses a value out of its documented range with an error that starts
// "--flag VALUE:", before connecting to anything; a value in range gets
// the command as far as connecting.
func TestNumericFlagsOverRandomValues(t *testing.T) {
	t.Parallel()
	inf := math.Inf(1)
	// serve binds before it connects: on its default port it would fail
	// whenever something else on the machine holds that port.
	flags := []numericFlag{
		{args: []string{"demo"}, flag: "orders", kind: "int", lo: 1, hi: orders.MaxDemoOrders},
		// No more customers than orders (200 unless given).
		{args: []string{"demo"}, flag: "customers", kind: "int", lo: 1, hi: orders.DefaultDemoOrders},
		{args: []string{"demo"}, flag: "lag", kind: "duration", lo: 0, hi: float64(maxDemoLag)},
		{args: []string{"serve", "--listen", "127.0.0.1:0"}, flag: "sla", kind: "duration", lo: 0, hi: inf, open: true},
		{args: []string{"serve", "--listen", "127.0.0.1:0"}, flag: "interval", kind: "duration", lo: float64(minLagInterval), hi: inf},
		{args: []string{"serve", "--listen", "127.0.0.1:0"}, flag: "demo-load", kind: "float", lo: web.MinLoadRate, hi: 1000, zero: true},
		{args: []string{"serve", "--listen", "127.0.0.1:0"}, flag: "shutdown-timeout", kind: "duration", lo: 0, hi: inf, open: true},
		{args: []string{"lag"}, flag: "sla", kind: "duration", lo: 0, hi: inf, open: true},
		{args: []string{"sagas", "list"}, flag: "limit", kind: "int", lo: 1, hi: inf},
		{args: []string{"sagas", "list"}, flag: "stuck-for", kind: "duration", lo: 0, hi: inf},
		{args: []string{"sagas", "retry", "x"}, flag: "wait", kind: "duration", lo: 0, hi: inf},
		{args: []string{"sagas", "cancel", "x"}, flag: "wait", kind: "duration", lo: 0, hi: inf},
		{args: []string{"bench"}, flag: "writers", kind: "int", lo: 1, hi: 64},
		{args: []string{"bench"}, flag: "batches", kind: "int", lo: 1, hi: 1000},
		{args: []string{"bench", "--scenario", "propagation"}, flag: "rate", kind: "int", lo: 1, hi: 20000},
		{args: []string{"bench", "--scenario", "saga"}, flag: "sagas", kind: "int", lo: 1, hi: 100000},
		{args: []string{"bench"}, flag: "duration", kind: "duration", lo: float64(minBenchDuration), hi: float64(maxBenchDuration), zero: true},
		{args: []string{"bench", "--scenario", "parallel"}, flag: "events", kind: "int", lo: 1, hi: 1_000_000},
		{args: []string{"dead-letters", "replay", "p/e", "--wait"}, flag: "timeout", kind: "duration", lo: 0, hi: inf, open: true},
		{args: []string{"projections", "rebuild", "p", "--wait"}, flag: "timeout", kind: "duration", lo: 0, hi: inf, open: true},
		{args: []string{"projections", "reset", "p", "--wait"}, flag: "timeout", kind: "duration", lo: 0, hi: inf, open: true},
	}
	// lag's --watch runs until interrupted: only 0 (measure once) and
	// values refused are tried.
	flags = append(flags, numericFlag{args: []string{"lag"}, flag: "watch", kind: "duration", lo: 0, hi: 0})
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	for _, f := range flags {
		for range 30 {
			v := f.sample(rng)
			if f.flag == "watch" && v > 0 {
				continue
			}
			text := f.format(v)
			args := append(append([]string{}, f.args...), "--"+f.flag+"="+text, "--database-url", unreachable)
			_, err := runCLI(t, args...)
			what := fmt.Sprintf("converge %s (seed %d)", strings.Join(args, " "), seed)
			require.Error(t, err, what)
			if f.valid(v) {
				require.ErrorContains(t, err, "connect to PostgreSQL at nobody@127.0.0.1:1/none", what)
				continue
			}
			require.True(t, strings.HasPrefix(err.Error(), "--"+f.flag+" "+text+": "), "%s: %v", what, err)
		}
	}
}

// TestTimeoutWithoutWaitIsRefused: --timeout bounds --wait only; given
// without it, it is refused before anything connects, whatever its value.
func TestTimeoutWithoutWaitIsRefused(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for _, args := range [][]string{{"dead-letters", "replay", "p/e"}, {"projections", "rebuild", "p"}, {"projections", "reset", "p"}} {
		d := time.Duration(1 + rng.Int64N(int64(time.Hour)))
		cmd := append(append([]string{}, args...), "--timeout", d.String(), "--database-url", unreachable)
		_, err := runCLI(t, cmd...)
		require.ErrorContains(t, err, "--timeout applies to --wait only", "%v", cmd)
		_, err = runCLI(t, append(cmd, "--wait=false")...)
		require.ErrorContains(t, err, "--timeout applies to --wait only", "%v --wait=false", cmd)
		// The control: with --wait the command goes on to connect.
		_, err = runCLI(t, append(cmd, "--wait")...)
		require.Error(t, err)
		require.NotContains(t, err.Error(), "--timeout", "%v --wait", cmd)
	}
}
