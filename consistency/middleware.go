package consistency

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/converge-es/converge/events"
)

// Middleware makes GET and HEAD handlers consistency-aware. For a request
// carrying a token (X-Consistency-Position or ?consistency_position=) it
// waits until the request's read models reach it or the deadline passes,
// then calls next with the Status in the request context
// (StatusFromContext). A request without a token is not delayed.
//
// Every labelled response carries X-Consistency-Position, the checkpoint the
// read reflects (a lower bound), and X-Consistency-Stale. They are set
// before next runs, so next may still override them and the ResponseWriter
// reaches next unwrapped (http.Flusher and friends keep working).
//
// A malformed or repeated token, or an X-Consistency-Timeout that is not a
// whole number of milliseconds in digits or is sent more than once (see
// HeaderTimeout), is answered with 400 and an application/problem+json
// body. A token ahead of every checkpoint (from another database, or
// forged) is not an error: it waits out the deadline and reads stale. When
// the client goes away during the wait, next is not called. next gets the
// request's own context, without the wait's deadline, so a stale read
// still has time to answer and a client that goes away during it still
// cancels it. A wait that fails while the client is still there is
// answered with a 500 problem body, never with an unlabelled answer
// (ErrWaitInUnit: a middleware that begins a unit of work is mounted
// outside this one). A stopped Tracker does not fail the
// wait: the answer is labelled stale (ReasonStopped).
//
// Other methods pass through untouched: write handlers set the header
// themselves with SetPosition.
//
// Middleware panics when tr is nil or cfg names no read models: that is a
// wiring mistake, found at start-up.
func Middleware(tr *Tracker, cfg *HTTPConfig) func(http.Handler) http.Handler {
	if tr == nil {
		panic("consistency: Middleware needs a Tracker")
	}
	if cfg == nil || (cfg.Projections == nil && len(cfg.Names) == 0) {
		panic("consistency: Middleware needs HTTPConfig.Projections or HTTPConfig.Names to know which read models a request reads")
	}
	if slices.Contains(cfg.Names, "") {
		panic("consistency: HTTPConfig.Names contains an empty name")
	}
	projections := cfg.Projections
	if projections == nil {
		static := slices.Clone(cfg.Names)
		projections = func(*http.Request) []string { return static }
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				next.ServeHTTP(w, r)
				return
			}
			names := projections(r)
			if len(names) == 0 {
				next.ServeHTTP(w, r)
				return
			}
			target, _, err := TokenFromRequest(r)
			if err != nil {
				writeParameterProblem(w, err)
				return
			}
			ctx := r.Context()
			if d, ok, err := timeoutFromRequest(r); err != nil {
				writeParameterProblem(w, err)
				return
			} else if ok {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, d)
				defer cancel()
			}
			// Without a token target is zero and Wait returns at once with the
			// current checkpoint: the response is labelled all the same.
			st, err := tr.Wait(ctx, target, names...)
			switch {
			case errors.Is(err, ErrNoNames):
				// HTTPConfig.Projections returned an empty name: a bug on our
				// side, so a 500 rather than a silent empty answer.
				WriteProblem(w, http.StatusInternalServerError, "", "the consistency middleware is misconfigured: "+err.Error())
				return
			case err != nil && r.Context().Err() != nil:
				// The client went away; nobody reads an answer.
				return
			case err != nil:
				// ErrWaitInUnit (a unit-per-request middleware mounted outside
				// this one), or anything else: the client is still there and
				// must not get an empty 200 without consistency headers.
				WriteProblem(w, http.StatusInternalServerError, "", "the consistency middleware could not wait: "+err.Error())
				return
			}
			h := w.Header()
			h.Set(HeaderPosition, st.Checkpoint.String())
			h.Set(HeaderStale, strconv.FormatBool(st.Stale))
			next.ServeHTTP(w, r.WithContext(ContextWithStatus(r.Context(), st)))
		})
	}
}

// writeParameterProblem answers 400 for a bad consistency parameter.
func writeParameterProblem(w http.ResponseWriter, err error) {
	p := &Problem{Status: http.StatusBadRequest, Detail: err.Error()}
	var pe *ParameterError
	if errors.As(err, &pe) {
		p.Parameter, p.Value = pe.Parameter, pe.Value
	}
	switch {
	case errors.Is(err, events.ErrTokenVersion):
		p.Type, p.Title = ProblemTokenVersion, "Consistency token from another version"
	case errors.Is(err, events.ErrInvalidToken):
		p.Type, p.Title = ProblemInvalidToken, "Invalid consistency token"
	default:
		p.Type, p.Title = ProblemInvalidTimeout, "Invalid consistency timeout"
	}
	WriteProblemDetails(w, p)
}
