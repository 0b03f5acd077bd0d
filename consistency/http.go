package consistency

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"time"

	"github.com/converge-es/converge/consistency/internal/rawquery"
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
	// HeaderTimeout sets a read's wait: a whole number of milliseconds,
	// written in the digits 0-9 alone (no sign, space or unit), 0 for "do
	// not wait, just label". Without it a read waits
	// TrackerConfig.DefaultTimeout; with it, the time asked for, shorter
	// or longer than that, but never past TrackerConfig.MaxTimeout (so the
	// server, not the client, bounds how long a request holds a waiter),
	// however many digits it has. Anything else, or the header sent more
	// than once, is a 400.
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
// a *ParameterError wrapping events.ErrInvalidToken; so is a query pair for
// the token that does not decode (a bad %-escape, a ';'), which
// url.ParseQuery would drop as if no token had been sent.
func TokenFromRequest(r *http.Request) (events.Token, bool, error) {
	hv := r.Header.Values(HeaderPosition)
	qv, qerr := queryTokens(r.URL.RawQuery)
	switch {
	case len(hv) > 1:
		return events.Token{}, false, &ParameterError{
			Parameter: HeaderPosition, Value: hv[1],
			Err: fmt.Errorf("%w: header sent %d times, send it once", events.ErrInvalidToken, len(hv)),
		}
	case qerr != nil:
		return events.Token{}, false, qerr
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

// queryTokens returns the values of QueryParam in rawQuery, decoded as
// url.ParseQuery decodes them. ParseQuery drops, without a word, a pair
// with a bad %-escape or a ';', and a token dropped so would read as no
// token at all: no wait, and a response labelled fresh however far behind
// the read model is. A pair that names QueryParam and cannot be decoded is
// a *ParameterError instead; other such pairs are the application's, and
// are left to it as ParseQuery leaves them.
func queryTokens(rawQuery string) ([]string, error) {
	vals, err := rawquery.Values(rawQuery, QueryParam)
	var qe *rawquery.Error
	if !errors.As(err, &qe) {
		return vals, err
	}
	switch qe.Fault {
	case rawquery.Semicolon:
		return nil, &ParameterError{
			Parameter: QueryParam, Value: qe.Value,
			Err: fmt.Errorf("%w: the query contains ';', which does not separate query parameters: separate them with '&', and encode a ';' inside a value as %%3B", events.ErrInvalidToken),
		}
	case rawquery.BadName:
		return nil, &ParameterError{
			Parameter: QueryParam, Value: qe.Value,
			Err: fmt.Errorf("%w: the query parameter's name %q is followed by a bad %%-escape: send it as %s=<token>", events.ErrInvalidToken, truncate(qe.Key, maxProblemValue), QueryParam),
		}
	default:
		return nil, &ParameterError{
			Parameter: QueryParam, Value: qe.Value,
			Err: fmt.Errorf("%w: the query parameter is not %%-encoded correctly (%w): send the token exactly as a write returned it, encoded with url.QueryEscape", events.ErrInvalidToken, qe.Err),
		}
	}
}

// timeoutFromRequest returns the wait the client asked for in
// X-Consistency-Timeout, and false when it asked for none.
func timeoutFromRequest(r *http.Request) (time.Duration, bool, error) {
	vals := r.Header.Values(HeaderTimeout)
	switch {
	case len(vals) > 1:
		// Which one the client meant is a guess, as for a repeated token.
		return 0, false, &ParameterError{
			Parameter: HeaderTimeout, Value: vals[1],
			Err: fmt.Errorf("header sent %d times, send it once", len(vals)),
		}
	case len(vals) == 0 || vals[0] == "":
		return 0, false, nil
	}
	raw := vals[0]
	d, ok := parseMillis(raw)
	if !ok {
		return 0, false, &ParameterError{
			Parameter: HeaderTimeout, Value: raw,
			Err: errors.New("want a whole number of milliseconds in digits 0-9 alone (no sign, space or unit), such as 500"),
		}
	}
	return d, true, nil
}

// maxMillis is the longest wait a time.Duration holds, in milliseconds:
// far past any MaxTimeout, which then caps it.
const maxMillis = math.MaxInt64 / int64(time.Millisecond)

// parseMillis reads s, ASCII digits alone, as milliseconds. A number too
// large for a Duration is still a whole number of milliseconds, so it is
// the longest Duration rather than an error: MaxTimeout caps it anyway.
func parseMillis(s string) (time.Duration, bool) {
	var ms int64
	for i := range len(s) {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		ms = min(ms*10+int64(c-'0'), maxMillis)
	}
	return time.Duration(ms) * time.Millisecond, s != ""
}
