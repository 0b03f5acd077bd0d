package feed

import (
	"context"
	"time"
)

// backoff doubles a delay from min up to max. The zero value of cur means
// "not backing off yet".
type backoff struct {
	min, max, cur time.Duration
}

// next returns the delay to wait now and doubles the following one.
func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(b.cur*2, b.max)
	}
	return b.cur
}

// reset starts the next wait from min again.
func (b *backoff) reset() { b.cur = 0 }

// sleep waits d or until ctx is done, and reports whether the full wait
// passed.
func sleep(ctx context.Context, d time.Duration) bool {
	return sleepOrWake(ctx, d, nil)
}

// sleepOrWake is sleep that also ends, reporting true, when wake is
// closed (a nil wake never is).
func sleepOrWake(ctx context.Context, d time.Duration, wake <-chan struct{}) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	case <-wake:
		return true
	}
}
