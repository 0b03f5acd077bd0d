package faulttest_test

import (
	"flag"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/faulttest"
)

var (
	failoverRounds = flag.Int("faults.failover", 0, "measure failover this many times: kill -9 the lease holder, time until delivery resumes (with -faults.lease-ttl)")
	freeze         = flag.Duration("faults.freeze", 0, "with -faults.failover: freeze the holder (SIGSTOP) this long instead of killing it")
)

// TestFailoverTime measures what LeaseTTL buys: it kills the worker holding
// the projection's lease and times how long until a worker delivers again,
// -faults.failover times (with -faults.freeze, it freezes the holder
// instead). It only runs when asked, e.g.
//
//	go test ./internal/faulttest -run FailoverTime -faults.failover 8 -faults.lease-ttl 5s -v
func TestFailoverTime(t *testing.T) {
	if *failoverRounds == 0 {
		t.Skip("a measurement, not a check: run with -faults.failover N")
	}
	t.Parallel()
	f := setup(t, 3, ttlFor())
	w := f.startWriter(t)
	defer w.Stop()

	deadline := time.After(time.Duration(*failoverRounds)*(3*f.ttl+10*time.Second) + time.Minute)
	for round := range *failoverRounds {
		// Wait until a worker holds the lease and delivers.
		var victim *faulttest.Process
		for victim == nil {
			changed := f.meter.Changed()
			if pid := f.meter.Holder(); pid != 0 && !f.meter.Measuring() {
				for _, p := range f.workers {
					if p.Pid() == pid {
						victim = p
					}
				}
			}
			if victim != nil {
				break
			}
			select {
			case <-changed:
			case <-deadline:
				t.Fatalf("round %d: no worker took the lease", round)
			}
		}
		// Kill at a random point of the renewal cycle, not right after the
		// acquisition, which would always leave the whole TTL to wait out.
		pause := time.NewTimer(rand.N(f.ttl))
		select {
		case <-pause.C:
		case <-deadline:
			t.Fatalf("round %d: out of time", round)
		}
		k := faulttest.Kill{At: time.Now(), Process: victim.Name(), Pid: victim.Pid()}
		if *freeze > 0 {
			require.NoError(t, victim.Freeze())
			f.meter.Killed(k)
			thaw := time.AfterFunc(*freeze, func() { _ = victim.Thaw() })
			defer thaw.Stop()
		} else {
			require.NoError(t, victim.Kill())
			f.meter.Killed(k)
			require.NoError(t, victim.Start())
		}
		for f.meter.Measuring() {
			changed := f.meter.Changed()
			if !f.meter.Measuring() {
				break
			}
			select {
			case <-changed:
			case <-deadline:
				t.Fatalf("round %d: nobody delivered after %s was killed", round, k.Process)
			}
		}
	}
	fo := f.meter.Failovers()
	require.Len(t, fo, *failoverRounds)
	what := "kill -9 of the holder"
	if *freeze > 0 {
		what = "freezing the holder for " + freeze.String()
	}
	t.Logf("LeaseTTL %s: failover after %s, %d rounds: min %s, median %s, max %s; all: %v",
		f.ttl, what, len(fo), fo[0].Round(10*time.Millisecond), fo[len(fo)/2].Round(10*time.Millisecond), fo[len(fo)-1].Round(10*time.Millisecond), fo)
	f.stopWorkers(t)
}
