package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// ParallelConfig configures the parallel scenario: a consumer whose handler
// spends HandlerDelay per event (standing in for a call to another
// service) handles Events events with each partition count, shared by
// Processes processes.
type ParallelConfig struct {
	// Events is how many events each run handles. Defaults to 2000.
	Events int
	// Partitions lists the partition counts to run; the first is the
	// baseline. Defaults to [1, 8].
	Partitions []int
	// HandlerDelay is the time the handler spends per event. Defaults to
	// 2ms.
	HandlerDelay time.Duration
	// Processes is how many processors (standing in for processes) share
	// the partitions. Defaults to 2.
	Processes int
}

func (c *ParallelConfig) withDefaults() ParallelConfig {
	out := ParallelConfig{}
	if c != nil {
		out = *c
	}
	if out.Events <= 0 {
		out.Events = 2000
	}
	if len(out.Partitions) == 0 {
		out.Partitions = []int{1, 8}
	}
	if out.HandlerDelay <= 0 {
		out.HandlerDelay = 2 * time.Millisecond
	}
	if out.Processes <= 0 {
		out.Processes = 2
	}
	return out
}

// ParallelResult is one JSON line of the parallel scenario.
type ParallelResult struct {
	Scenario     string  `json:"scenario"`
	Partitions   int     `json:"partitions"`
	Processes    int     `json:"processes"`
	Events       int     `json:"events"`
	EventsPerSec float64 `json:"events_per_sec"`
	// Baseline names the run compared with: the first partition count's.
	Baseline       string  `json:"baseline"`
	BaselinePerSec float64 `json:"baseline_per_sec"`
	Ratio          float64 `json:"ratio"`
}

// ParallelSource is what the scenario runs on: a store and its feed
// (a pgstore.Store or a memstore.Store).
type ParallelSource interface {
	events.Store
	feed.Source
}

// Parallel runs the parallel scenario and writes one JSON line per
// partition count to out. The baseline is the first partition count's
// rate, measured in the same run.
func Parallel(ctx context.Context, src ParallelSource, cfg *ParallelConfig, out io.Writer) ([]ParallelResult, error) {
	res, err := runParallel(ctx, src, cfg, out)
	return res, interrupted(ctx, err)
}

func runParallel(ctx context.Context, src ParallelSource, cfg *ParallelConfig, out io.Writer) ([]ParallelResult, error) {
	c := cfg.withDefaults()
	run := uuid.NewString()[:8]
	var results []ParallelResult
	for i, p := range c.Partitions {
		category := fmt.Sprintf("bench%s_%d", run, p)
		if err := fillParallel(ctx, src, category, c.Events); err != nil {
			return results, err
		}
		rate, err := parallelRun(ctx, src, category, p, c)
		if err != nil {
			return results, fmt.Errorf("bench: parallel with %d partitions: %w", p, err)
		}
		r := ParallelResult{
			Scenario: "parallel", Partitions: p, Processes: c.Processes, Events: c.Events,
			EventsPerSec: round1(rate), Baseline: fmt.Sprintf("partitions_%d", c.Partitions[0]),
		}
		if i == 0 {
			r.BaselinePerSec = r.EventsPerSec
		} else {
			r.BaselinePerSec = results[0].EventsPerSec
		}
		r.Ratio = ratio(r.EventsPerSec, r.BaselinePerSec)
		results = append(results, r)
		if err := writeLine(ctx, out, r); err != nil {
			return results, err
		}
	}
	return results, nil
}

// fillParallel appends n events to n streams of category, one each. The
// partitions' shares of the work follow how the streams hash, and the
// slowest partition sets the time: with 200 streams of ten events the
// hash alone capped the 8-partition ratio at 5.1 to 7.1 depending on the
// run's random category, and the figure moved as much between runs; with
// one event per stream it caps it at 7.0 to 7.6. (Before that, 50 events
// per stream put 2,000 events in 40 streams, and the ratio moved between
// 4 and 6.)
func fillParallel(ctx context.Context, s events.Store, category string, n int) error {
	for i := range n {
		ev := events.Event{Data: events.Raw{Type: "bench.work", Payload: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i))}}
		if _, err := s.Append(ctx, fmt.Sprintf("%s-%d", category, i), events.AnyVersion, ev); err != nil {
			return fmt.Errorf("bench: fill: %w", err)
		}
	}
	return nil
}

// parallelRun handles the category's events with partitions partitions
// shared by c.Processes processors and returns events per second, timed
// from the moment every partition is held to the moment all are applied.
func parallelRun(ctx context.Context, src ParallelSource, category string, partitions int, c ParallelConfig) (float64, error) {
	head, err := src.Head(ctx)
	if err != nil {
		return 0, err
	}
	start := make(chan struct{})
	name := "bench-parallel-" + category
	quiet := slog.New(slog.DiscardHandler)
	handler := func(ctx context.Context, _ events.Envelope) error {
		select {
		case <-start:
		case <-ctx.Done():
			return ctx.Err()
		}
		t := time.NewTimer(c.HandlerDelay)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var procs []*feed.Processor
	var routers []*message.Router
	defer func() {
		cancel()
		for _, r := range routers {
			<-r.Running()
			_ = r.Close()
		}
		for _, p := range procs {
			_ = p.Close()
		}
	}()
	for range c.Processes {
		p, err := feed.NewProcessor(src, &feed.ProcessorConfig{
			Name:       name,
			Categories: []string{category},
			Partitions: partitions,
			Subscriber: feed.SubscriberConfig{LeaseTTL: 2 * time.Second, Logger: quiet},
			Logger:     quiet,
		}, handler)
		if err != nil {
			return 0, err
		}
		r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		if err != nil {
			return 0, err
		}
		if err := p.AddHandlers(r); err != nil {
			return 0, err
		}
		procs = append(procs, p)
		routers = append(routers, r)
		go func() { _ = r.Run(rctx) }()
	}
	// Wait until the processes have split the partitions between them.
	want := min(c.Processes, partitions)
	if err := poll(ctx, 30*time.Second, func() bool {
		held, owners := 0, 0
		for _, p := range procs {
			n := 0
			for _, ps := range p.Status().Partitions {
				if ps.State == feed.PartitionActive {
					n++
				}
			}
			held += n
			if n > 0 {
				owners++
			}
		}
		return held == partitions && owners == want
	}); err != nil {
		return 0, fmt.Errorf("the processes never split the partitions: %w", err)
	}
	t0 := time.Now()
	close(start)
	if err := poll(ctx, 10*time.Minute, func() bool {
		pos, err := procs[0].Position(ctx)
		return err == nil && !pos.Before(head)
	}); err != nil {
		return 0, fmt.Errorf("the events were never all applied: %w", err)
	}
	return float64(c.Events) / time.Since(t0).Seconds(), nil
}

// poll calls done every 5ms until it reports true, the timeout passes or
// ctx ends. Benchmarks poll: they time the outcome, not a test's logic.
func poll(ctx context.Context, timeout time.Duration, done func() bool) error {
	deadline := time.Now().Add(timeout)
	for !done() {
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}
