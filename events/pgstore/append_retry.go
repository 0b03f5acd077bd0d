package pgstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/converge-es/converge/events"
)

const (
	// DefaultAppendMaxAttempts is the default AppendRetry.MaxAttempts.
	DefaultAppendMaxAttempts = 10
	// DefaultAppendMaxElapsed is the default AppendRetry.MaxElapsed: long
	// enough to ride out a fast PostgreSQL restart or failover.
	DefaultAppendMaxElapsed = 10 * time.Second
	// DefaultAppendInitialBackoff is the default AppendRetry.InitialBackoff.
	DefaultAppendInitialBackoff = 50 * time.Millisecond
	// DefaultAppendMaxBackoff is the default AppendRetry.MaxBackoff.
	DefaultAppendMaxBackoff = time.Second
)

// AppendRetry bounds how Append retries transient failures (see
// events.ErrUnavailable) by itself. Retries reuse the first attempt's event
// ids, so a retry after a lost reply finds its events stored and returns the
// original result instead of writing them twice. AppendTx never retries:
// its caller owns the transaction.
type AppendRetry struct {
	// MaxAttempts caps the attempts of one Append, the first included; 1
	// turns retries off. Defaults to DefaultAppendMaxAttempts (10).
	MaxAttempts int
	// MaxElapsed caps the time one Append spends retrying: no attempt
	// starts after it. The context's deadline bounds it too. Defaults to
	// DefaultAppendMaxElapsed (10s).
	MaxElapsed time.Duration
	// InitialBackoff is the pause before the first retry; it doubles for
	// each further one. Defaults to DefaultAppendInitialBackoff (50ms).
	InitialBackoff time.Duration
	// MaxBackoff caps the pause between attempts. Defaults to
	// DefaultAppendMaxBackoff (1s).
	MaxBackoff time.Duration
}

func (r AppendRetry) withDefaults() AppendRetry {
	r.MaxAttempts = cmp.Or(r.MaxAttempts, DefaultAppendMaxAttempts)
	r.MaxElapsed = cmp.Or(r.MaxElapsed, DefaultAppendMaxElapsed)
	r.InitialBackoff = cmp.Or(r.InitialBackoff, DefaultAppendInitialBackoff)
	r.MaxBackoff = cmp.Or(r.MaxBackoff, DefaultAppendMaxBackoff)
	return r
}

func (r AppendRetry) validate() error {
	switch {
	case r.MaxAttempts < 0:
		return fmt.Errorf("pgstore: Config.AppendRetry.MaxAttempts is %d: use 0 for the default, 1 for no retries", r.MaxAttempts)
	case r.MaxElapsed < 0, r.InitialBackoff < 0, r.MaxBackoff < 0:
		return errors.New("pgstore: Config.AppendRetry durations must not be negative (use 0 for the defaults)")
	}
	return nil
}

// appendRetrying runs once until it gives an answer, retrying transient
// failures within s.cfg.AppendRetry. Once an attempt's outcome is unknown,
// only an answer resolves it: a later failure that is again only
// unavailability is reported as the unknown outcome. ids are the events'
// ids, the same in every attempt.
func (s *Store) appendRetrying(ctx context.Context, streamID string, ids []string, once func(context.Context) (events.AppendResult, error)) (events.AppendResult, error) {
	pol := s.cfg.AppendRetry
	start := time.Now()
	delay := pol.InitialBackoff
	unknown := false
	for attempt := 1; ; attempt++ {
		res, err := once(ctx)
		if err == nil {
			if unknown {
				// Found stored after an attempt of this call went
				// unanswered: as far as the caller can tell, this call
				// stored them.
				res.AlreadyStored = false
			}
			return res, nil
		}
		if errors.Is(err, events.ErrUnavailable) {
			s.heads.forgetAll() // see streamHeads: the server may have restarted
		}
		if errors.Is(err, events.ErrOutcomeUnknown) {
			unknown = true
		}
		transient := errors.Is(err, events.ErrUnavailable) || errors.Is(err, events.ErrOutcomeUnknown)
		if !transient || ctx.Err() != nil || attempt >= pol.MaxAttempts || time.Since(start)+delay > pol.MaxElapsed {
			return events.AppendResult{}, s.gaveUp(streamID, ids, unknown, err, attempt)
		}
		s.cfg.Logger.Debug("pgstore: append failed, retrying", "stream", streamID, "attempt", attempt, "err", err)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return events.AppendResult{}, s.gaveUp(streamID, ids, unknown, fmt.Errorf("%w (while waiting to retry: %w)", ctxErr(ctx), err), attempt)
		case <-t.C:
		}
		delay = min(delay*2, pol.MaxBackoff)
	}
}

// gaveUp is the error Append returns after its last attempt.
func (s *Store) gaveUp(streamID string, ids []string, unknown bool, err error, attempts int) error {
	if attempts > 1 {
		err = fmt.Errorf("after %d attempts: %w", attempts, err)
	}
	answered := !errors.Is(err, events.ErrUnavailable) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
	if unknown && answered {
		return err // a later attempt settled it: e.g. a conflict means the events are not stored
	}
	if unknown && !errors.Is(err, events.ErrOutcomeUnknown) {
		return &events.OutcomeUnknownError{StreamID: streamID, EventIDs: ids, Err: err}
	}
	if attempts > 1 {
		return fmt.Errorf("pgstore: append to %q %w", streamID, err)
	}
	return err
}
