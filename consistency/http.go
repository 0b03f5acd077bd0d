package consistency

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/converge-es/converge/events"
)

const (
	// HeaderPosition carries a consistency token. Write responses set it to
	// the position of the write (SetPosition); read requests send it back to
	// read their own writes; read responses carry the checkpoint they
	// reflect, which the client may send on its next read.
	HeaderPosition = "X-Consistency-Position"
	// HeaderStale is "true" on a read response whose read models had not
	// reached the requested position by the deadline, "false" otherwise.
	HeaderStale = "X-Consistency-Stale"
	// HeaderTimeout sets a read's wait: a whole number of milliseconds, 0
	// for "do not wait, just label". Without it a read waits
	// TrackerConfig.DefaultTimeout; with it, the time asked for, shorter
	// or longer than that, but never past TrackerConfig.MaxTimeout (so the
	// server, not the client, bounds how long a request holds a waiter).
	HeaderTimeout = "X-Consistency-Timeout"
	// QueryParam carries the token where a header cannot be set (links,
	// EventSource). The header wins when both are sent and agree; sending
	// two different tokens is a 400.
	QueryParam = "consistency_position"
)

// SetPosition sets the X-Consistency-Position header of a write's response
// to the token the write returned. Call it before writing the body.
func SetPosition(w http.ResponseWriter, tok events.Token) {
	w.Header().Set(HeaderPosition, tok.String())
}

// ParameterError reports a consistency header or query parameter that
// cannot be used. It unwraps to the parse error, so errors.Is(err,
// events.ErrInvalidToken) holds for bad tokens.
type ParameterError struct {
	// Parameter is the header or query parameter at fault.
	Parameter string
	// Value is what the client sent.
	Value string
	// Err is the underlying error.
	Err error
}

func (e *ParameterError) Error() string {
	return fmt.Sprintf("%s: %v", e.Parameter, e.Err)
}

// Unwrap returns the underlying error.
func (e *ParameterError) Unwrap() error { return e.Err }

// TokenFromRequest returns the consistency token a request carries in
// X-Consistency-Position or the consistency_position query parameter, and
// false when it carries none. A malformed, repeated or conflicting token is
// a *ParameterError wrapping events.ErrInvalidToken.
func TokenFromRequest(r *http.Request) (events.Token, bool, error) {
	hv := r.Header.Values(HeaderPosition)
	qv := r.URL.Query()[QueryParam]
	switch {
	case len(hv) > 1:
		return events.Token{}, false, &ParameterError{
			Parameter: HeaderPosition, Value: hv[1],
			Err: fmt.Errorf("%w: header sent %d times, send it once", events.ErrInvalidToken, len(hv)),
		}
	case len(qv) > 1:
		return events.Token{}, false, &ParameterError{
			Parameter: QueryParam, Value: qv[1],
			Err: fmt.Errorf("%w: query parameter sent %d times, send it once", events.ErrInvalidToken, len(qv)),
		}
	case len(hv) == 1 && len(qv) == 1 && hv[0] != qv[0]:
		return events.Token{}, false, &ParameterError{
			Parameter: QueryParam, Value: qv[0],
			Err: fmt.Errorf("%w: the %s header and the %s query parameter differ, send one", events.ErrInvalidToken, HeaderPosition, QueryParam),
		}
	}
	param, raw := HeaderPosition, ""
	switch {
	case len(hv) == 1:
		raw = hv[0]
	case len(qv) == 1:
		param, raw = QueryParam, qv[0]
	default:
		return events.Token{}, false, nil
	}
	tok, err := events.ParseToken(raw)
	if err != nil {
		return events.Token{}, false, &ParameterError{Parameter: param, Value: raw, Err: err}
	}
	return tok, true, nil
}

// timeoutFromRequest returns the wait the client asked for in
// X-Consistency-Timeout, and false when it asked for none.
func timeoutFromRequest(r *http.Request) (time.Duration, bool, error) {
	raw := r.Header.Get(HeaderTimeout)
	if raw == "" {
		return 0, false, nil
	}
	ms, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || ms < 0 {
		return 0, false, &ParameterError{
			Parameter: HeaderTimeout, Value: raw,
			Err: errors.New("want a whole number of milliseconds >= 0, such as 500"),
		}
	}
	// Anything past a day is clamped by MaxTimeout anyway; bounding it here
	// keeps the multiplication from overflowing.
	return time.Duration(min(ms, int64(24*time.Hour/time.Millisecond))) * time.Millisecond, true, nil
}
