package faulttest

import (
	"cmp"
	"context"
	"errors"
	"regexp"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/converge-es/converge/events"
)

// WriterConfig configures StartWriter.
type WriterConfig struct {
	// Store is appended to. Required.
	Store events.Store
	// Next returns the i-th append (i counts from 0): the stream and the
	// events, appended with events.AnyVersion. Events without an ID get one
	// before the first attempt, and keep it through every retry. Required.
	Next func(i int) (stream string, evs []events.Event)
	// Concurrency is how many appends run at once. Defaults to 2.
	Concurrency int
	// Pace is the least time between two appends of one goroutine, so the
	// writer leaves the machine to the processes under test. Defaults to
	// 5ms.
	Pace time.Duration
	// AttemptTimeout bounds one attempt. Defaults to 5s.
	AttemptTimeout time.Duration
	// RetryMin and RetryMax bound the backoff between attempts. Default to
	// 20ms and 1s.
	RetryMin, RetryMax time.Duration
	// ResolveTimeout is how long Stop lets appends in flight retry until
	// their outcome is known. Defaults to 60s.
	ResolveTimeout time.Duration
}

func (c *WriterConfig) withDefaults() WriterConfig {
	out := *c
	out.Concurrency = cmp.Or(out.Concurrency, 2)
	out.Pace = cmp.Or(out.Pace, 5*time.Millisecond)
	out.AttemptTimeout = cmp.Or(out.AttemptTimeout, 5*time.Second)
	out.RetryMin = cmp.Or(out.RetryMin, 20*time.Millisecond)
	out.RetryMax = cmp.Or(out.RetryMax, time.Second)
	out.ResolveTimeout = cmp.Or(out.ResolveTimeout, 60*time.Second)
	return out
}

// Append is one logical append of the writer.
type Append struct {
	Index    int
	StreamID string
	EventIDs []string
	// Attempts is how many times it was sent.
	Attempts int
	// Token is where it landed; zero when a retry learned through
	// events.ErrDuplicateEvent that an earlier attempt had committed.
	Token events.Token
	// Err is the last error, for appends that failed or stayed unknown.
	Err error
}

// WriterResult is what a Writer did.
type WriterResult struct {
	// Confirmed appends are known to be stored: an attempt succeeded, or
	// a retry was refused as a duplicate of an earlier attempt.
	Confirmed []Append
	// Unknown appends were still failing when the writer stopped: each
	// may be stored once or not at all, never twice.
	Unknown []Append
	// Refused appends failed with an error that retrying cannot fix
	// (events.ErrInvalidEvent, events.ErrUnknownType, or a duplicate on the
	// very first attempt): a bug in the workload.
	Refused []Append
	// Retries counts attempts after the first; Errors counts failed
	// attempts by error text (shortened).
	Retries int
	Errors  map[string]int
}

// Writer appends events while faults happen, and knows afterwards which
// appends are stored. It treats an error as "outcome unknown": it retries
// the same events (same ids) until an attempt succeeds or a retry is
// refused as a duplicate, which proves an earlier attempt committed. A
// writer that retried with fresh ids would double events.
type Writer struct {
	cfg  WriterConfig
	stop context.CancelFunc
	wg   sync.WaitGroup
	mu   sync.Mutex
	next int
	res  WriterResult
}

// StartWriter starts appending until Stop or ctx ends.
func StartWriter(ctx context.Context, cfg *WriterConfig) (*Writer, error) {
	if cfg == nil || cfg.Store == nil || cfg.Next == nil {
		return nil, errors.New("faulttest: WriterConfig needs Store and Next")
	}
	c := cfg.withDefaults()
	ctx, stop := context.WithCancel(ctx)
	w := &Writer{cfg: c, stop: stop, res: WriterResult{Errors: map[string]int{}}}
	for range c.Concurrency {
		w.wg.Go(func() { w.loop(ctx) })
	}
	return w, nil
}

// Confirmed returns how many appends are confirmed so far.
func (w *Writer) Confirmed() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.res.Confirmed)
}

// Stop stops taking new appends, lets those in flight resolve (within
// ResolveTimeout) and returns the result.
func (w *Writer) Stop() WriterResult {
	w.stop()
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.res
}

func (w *Writer) loop(ctx context.Context) {
	pace := time.NewTicker(w.cfg.Pace)
	defer pace.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-pace.C:
		}
		w.mu.Lock()
		i := w.next
		w.next++
		w.mu.Unlock()
		stream, evs := w.cfg.Next(i)
		a := Append{Index: i, StreamID: stream}
		for j := range evs {
			if evs[j].ID == "" {
				evs[j].ID = uuid.NewString()
			}
			a.EventIDs = append(a.EventIDs, evs[j].ID)
		}
		w.resolve(ctx, &a, evs)
	}
}

// resolve appends until the outcome is known. Once ctx ends it keeps
// going for ResolveTimeout: an append whose outcome is unknown is the case
// under test, not one to drop.
func (w *Writer) resolve(ctx context.Context, a *Append, evs []events.Event) {
	bg := context.WithoutCancel(ctx)
	var giveUp <-chan time.Time // set once ctx ends
	backoff := w.cfg.RetryMin
	for {
		a.Attempts++
		actx, cancel := context.WithTimeout(bg, w.cfg.AttemptTimeout)
		res, err := w.cfg.Store.Append(actx, a.StreamID, events.AnyVersion, evs...)
		cancel()
		a.Err = err
		switch {
		case err == nil:
			a.Token = res.Token
			w.record(func(r *WriterResult) { r.Confirmed = append(r.Confirmed, *a) })
			return
		case errors.Is(err, events.ErrDuplicateEvent) && a.Attempts > 1:
			w.record(func(r *WriterResult) { r.Confirmed = append(r.Confirmed, *a) })
			return
		case errors.Is(err, events.ErrDuplicateEvent), errors.Is(err, events.ErrInvalidEvent), errors.Is(err, events.ErrUnknownType):
			w.record(func(r *WriterResult) { r.Refused = append(r.Refused, *a) })
			return
		}
		w.record(func(r *WriterResult) {
			r.Errors[errorClass(err)]++
			r.Retries++
		})
		stopped := ctx.Done()
		if giveUp != nil {
			stopped = nil
		}
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-giveUp:
			t.Stop()
			w.record(func(r *WriterResult) { r.Unknown = append(r.Unknown, *a) })
			return
		case <-stopped:
			t.Stop() // retry at once, then within ResolveTimeout
			giveUp = time.After(w.cfg.ResolveTimeout)
		}
		backoff = min(2*backoff, w.cfg.RetryMax)
	}
}

func (w *Writer) record(f func(*WriterResult)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(&w.res)
}

// errorClass shortens an error's text for counting: stream names, ports
// and pids differ between attempts that failed for the same reason.
func errorClass(err error) string {
	s := quoted.ReplaceAllString(err.Error(), `"…"`)
	s = port.ReplaceAllString(s, ":…")
	if len(s) > 120 {
		s = s[:120] + "…"
	}
	return s
}

var (
	quoted = regexp.MustCompile(`"[^"]*"`)
	port   = regexp.MustCompile(`:[0-9]{2,5}\b`)
)
