package faulttest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// ClusterRestart is one planned restart of PostgreSQL during RunChaos.
type ClusterRestart struct {
	// At is when it starts, from the start of RunChaos.
	At   time.Duration
	Mode ShutdownMode
	// Down is how long the server stays down.
	Down time.Duration
}

// ChaosConfig configures RunChaos.
type ChaosConfig struct {
	// Processes are the workers to kill. Required.
	Processes []*Process
	// Cluster is restarted as Restarts says. Defaults to nil (no restarts).
	Cluster  *Cluster
	Restarts []ClusterRestart
	// Duration is how long the faults go on. Required.
	Duration time.Duration
	// KillEvery is the mean gap between two kills; each gap is drawn
	// uniformly from [KillEvery/2, 3*KillEvery/2]. Defaults to 3s.
	KillEvery time.Duration
	// RestartAfter is how long a killed process stays dead. Defaults to
	// 500ms.
	RestartAfter time.Duration
	// Seed seeds the choice of victims and gaps; it is in the report, so a
	// failing run's schedule can be replayed. Defaults to a random seed.
	Seed uint64
	// Pick chooses the victim among the running processes (their indexes
	// in Processes). Defaults to a uniformly random one.
	Pick func(running []int, rng *rand.Rand) int
	// OnKill, when set, is called right after each kill. Defaults to nil.
	OnKill func(Kill)
	// Logf, when set, receives a line per fault (t.Logf). Defaults to nil.
	Logf func(format string, args ...any)
}

// Kill is one SIGKILL RunChaos sent.
type Kill struct {
	At      time.Time
	Process string
	Pid     int
}

// ChaosReport is what RunChaos did.
type ChaosReport struct {
	Seed     uint64
	Kills    []Kill
	Restarts []ClusterRestart
}

// RunChaos kills a random running process every KillEvery (it comes back
// after RestartAfter) and restarts the cluster as planned, for Duration.
// When it returns every process runs again and the cluster is up, or it
// returns why not.
func RunChaos(ctx context.Context, cfg *ChaosConfig) (ChaosReport, error) {
	c := *cfg
	if len(c.Processes) == 0 || c.Duration <= 0 {
		return ChaosReport{}, errors.New("faulttest: ChaosConfig needs Processes and a positive Duration")
	}
	c.KillEvery = cmp.Or(c.KillEvery, 3*time.Second)
	c.RestartAfter = cmp.Or(c.RestartAfter, 500*time.Millisecond)
	if c.Seed == 0 {
		c.Seed = rand.Uint64()
	}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	rng := rand.New(rand.NewPCG(c.Seed, 0))
	if c.Pick == nil {
		c.Pick = func(running []int, rng *rand.Rand) int { return running[rng.IntN(len(running))] }
	}
	rep := ChaosReport{Seed: c.Seed}
	c.Logf("faulttest: chaos for %s, seed %d", c.Duration, c.Seed)

	ctx, cancel := context.WithTimeout(ctx, c.Duration)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}

	start := time.Now()
	for _, r := range c.Restarts {
		if c.Cluster == nil {
			return rep, errors.New("faulttest: ChaosConfig.Restarts needs a Cluster")
		}
		wg.Go(func() {
			t := time.NewTimer(r.At)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
			c.Logf("faulttest: %s: PostgreSQL shutdown -m %s, down for %s", time.Since(start).Round(time.Millisecond), r.Mode, r.Down)
			// The restart itself is not cut short by the end of the run: a
			// cluster left down would fail the checks for the wrong reason.
			if err := c.Cluster.Restart(context.WithoutCancel(ctx), r.Mode, r.Down); err != nil {
				fail(err)
				return
			}
			c.Logf("faulttest: %s: PostgreSQL is up again", time.Since(start).Round(time.Millisecond))
			mu.Lock()
			rep.Restarts = append(rep.Restarts, r)
			mu.Unlock()
		})
	}

	for {
		gap := c.KillEvery/2 + time.Duration(rng.Int64N(int64(c.KillEvery)+1))
		t := time.NewTimer(gap)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			wg.Wait()
			return rep, errors.Join(append(errs, c.restartAll())...)
		}
		var running []int
		for i, p := range c.Processes {
			if p.Running() {
				running = append(running, i)
			}
		}
		if len(running) == 0 {
			continue
		}
		p := c.Processes[c.Pick(running, rng)]
		k := Kill{At: time.Now(), Process: p.Name(), Pid: p.Pid()}
		if err := p.Kill(); err != nil {
			fail(err)
			continue
		}
		rep.Kills = append(rep.Kills, k)
		c.Logf("faulttest: %s: kill -9 %s (pid %d)", time.Since(start).Round(time.Millisecond), k.Process, k.Pid)
		if c.OnKill != nil {
			c.OnKill(k)
		}
		wg.Go(func() {
			t := time.NewTimer(c.RestartAfter)
			defer t.Stop()
			select {
			case <-t.C:
			case <-ctx.Done():
			}
			if err := p.Start(); err != nil {
				fail(err)
			}
		})
	}
}

// restartAll starts every process that is not running.
func (c ChaosConfig) restartAll() error {
	var errs []error
	for _, p := range c.Processes {
		if err := p.Start(); err != nil {
			errs = append(errs, fmt.Errorf("faulttest: restart %s after the chaos: %w", p.Name(), err))
		}
	}
	return errors.Join(errs...)
}
