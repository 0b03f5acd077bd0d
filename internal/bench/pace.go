package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"
)

// belowRateShare is the share of the asked rate below which a summary
// says a method did not reach it: its figures were then measured at a
// lower load than the line's "rate".
const belowRateShare = 0.9

// paced is what a paced run achieved: how many calls succeeded and when
// the first and the last of them returned.
type paced struct {
	n           int
	first, last time.Time
}

// perSec is the rate the calls reached, from the first call's return to
// the last's: (n-1) intervals over that span, so a run that kept its
// schedule reports its rate exactly. It is 0 when fewer than two calls
// returned (no interval to measure), rounded to one decimal.
func (p paced) perSec() float64 {
	return achievedRate(p.n, p.first, p.last)
}

func achievedRate(n int, first, last time.Time) float64 {
	span := last.Sub(first)
	if n < 2 || span <= 0 {
		return 0
	}
	return round1(float64(n-1) / span.Seconds())
}

// reachedRate says whether achieved is at least belowRateShare of rate.
func reachedRate(achieved float64, rate int) bool {
	return achieved >= belowRateShare*float64(rate)
}

// schedule is pace's schedule for rate calls a second over d: the interval
// between two calls and how many it makes (at least one). Callers that
// wait for every call's effect count them with it too.
func schedule(rate int, d time.Duration) (interval time.Duration, total int) {
	interval = time.Second / time.Duration(rate)
	return interval, max(int(d/interval), 1)
}

// pace calls call(ctx, i) for i = 0, 1, ... on a schedule of rate calls a
// second for d (at least one call), from senders goroutines that take the
// scheduled slots in turn, so one slow call does not push the whole
// schedule back. A call that fails is not counted and stops the
// schedule; pace returns the first such error. Interrupted (ctx done), it
// stops and returns ctx's error.
func pace(ctx context.Context, rate int, d time.Duration, senders int, call func(ctx context.Context, i int) error) (paced, error) {
	interval, total := schedule(rate, d)
	slots := make(chan int)
	var (
		mu    sync.Mutex
		res   paced
		first error
	)
	failed := make(chan struct{})
	var wg sync.WaitGroup
	for range max(senders, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range slots {
				err := call(ctx, i)
				now := time.Now()
				mu.Lock()
				if err != nil {
					if first == nil {
						first = err
						close(failed)
					}
				} else {
					if res.n == 0 || now.Before(res.first) {
						res.first = now
					}
					if now.After(res.last) {
						res.last = now
					}
					res.n++
				}
				mu.Unlock()
			}
		}()
	}
	start := time.Now()
schedule:
	for i := range total {
		if err := waitForSlot(ctx, start, i, interval); err != nil {
			break
		}
		select {
		case slots <- i:
		case <-failed:
			break schedule
		case <-ctx.Done():
			break schedule
		}
	}
	close(slots)
	wg.Wait()
	if err := ctx.Err(); err != nil && (first == nil || errors.Is(first, err)) {
		return res, err
	}
	return res, first
}

// waitForSlot sleeps until the i-th slot of a schedule that starts at
// start and has one slot every interval, or until ctx is done. A late slot
// is taken at once, so one slow call does not shift the whole schedule.
func waitForSlot(ctx context.Context, start time.Time, i int, interval time.Duration) error {
	return sleep(ctx, time.Until(start.Add(time.Duration(i)*interval)))
}

// sleep waits for d, or returns ctx's error once ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// interrupted returns err saying that the run was interrupted when ctx
// is done (Ctrl-C), as writeLine does: a failure once ctx is done is the
// interrupt's doing, whatever step it cut short. It keeps both ctx's error
// and err (errors.Is finds context.Canceled either way).
func interrupted(ctx context.Context, err error) error {
	cerr := ctx.Err()
	if err == nil || cerr == nil || errors.Is(err, errInterrupted) {
		return err
	}
	if errors.Is(err, cerr) {
		return fmt.Errorf("%w: %w", errInterrupted, err)
	}
	return fmt.Errorf("%w: %w (%w)", errInterrupted, cerr, err)
}

// percentile is the nearest-rank p-th percentile of sorted: the smallest
// sample with at least p of the samples at or below it (index
// ceil(p*n)-1). With fewer than 100 samples, p99 is the slowest.
// It is 0 for no samples.
func percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	// The epsilon keeps p*n that is a whole number in exact arithmetic
	// (0.95*20) from rounding up past it in floating point.
	rank := int(math.Ceil(p*float64(n) - 1e-9))
	return sorted[min(max(rank, 1), n)-1]
}
