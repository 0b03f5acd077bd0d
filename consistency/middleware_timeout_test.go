package consistency_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// timeoutReader is a Middleware in front of a handler over a read model at
// the last possible position, so no token waits and every request tests
// the header alone. ran counts the requests the handler saw.
type timeoutReader struct {
	h   http.Handler
	ran int
}

func newTimeoutReader(tr *consistency.Tracker) *timeoutReader {
	tr.Advance("orders", events.MakeToken(math.MaxUint64, math.MaxUint64))
	r := &timeoutReader{}
	r.h = consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"orders"}})(
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) { r.ran++ }))
	return r
}

// serve sends a read with the X-Consistency-Timeout values given, each as
// a header line of its own.
func (r *timeoutReader) serve(values ...string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/orders", nil)
	req.Header.Set(consistency.HeaderPosition, tok(1).String())
	req.Header[consistency.HeaderTimeout] = values
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	return rec
}

// requireTimeoutProblem checks rec is the 400 problem for the header value
// the client sent.
func requireTimeoutProblem(t *testing.T, rec *httptest.ResponseRecorder, value string) {
	t.Helper()
	require.Equal(t, http.StatusBadRequest, rec.Code, "X-Consistency-Timeout %q", value)
	require.Equal(t, consistency.ContentTypeProblem, rec.Header().Get("Content-Type"))
	var p problemBody
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p), "the problem is JSON: %q", rec.Body.String())
	require.Equal(t, consistency.ProblemInvalidTimeout, p.Type)
	require.Equal(t, consistency.HeaderTimeout, p.Parameter)
	require.Equal(t, value, p.Value, "the problem shows what the client sent")
}

// TestMiddleware_TimeoutHeaderOfAnyLengthIsHonoured: HeaderTimeout honours
// any whole number of milliseconds, capped at MaxTimeout, so a value of
// digits alone is never a 400, however long (past int64 and Duration
// included). Lengths of 1 to 40 digits are drawn at random.
func TestMiddleware_TimeoutHeaderOfAnyLengthIsHonoured(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 17))
	r := newTimeoutReader(setup(t, &consistency.TrackerConfig{MaxTimeout: 50 * time.Millisecond}))
	for i := range 500 {
		var b strings.Builder
		for range 1 + rng.IntN(40) {
			b.WriteByte(byte('0' + rng.IntN(10)))
		}
		ms := b.String()
		rec := r.serve(ms)
		require.Equal(t, http.StatusOK, rec.Code, "X-Consistency-Timeout %s: %s", ms, rec.Body.String())
		require.Equal(t, "false", rec.Header().Get(consistency.HeaderStale))
		require.Equal(t, i+1, r.ran, "the handler runs for %s", ms)
	}
}

// TestMiddleware_TimeoutHeaderWantsDigitsOnce: HeaderTimeout is the digits
// 0-9 alone, sent once. A sign (even "+500" or "-0"), a space, a unit or
// a repeated header, whose values could each be what the client meant
// (as with a repeated X-Consistency-Position), is a 400 naming the header,
// and the handler does not run.
func TestMiddleware_TimeoutHeaderWantsDigitsOnce(t *testing.T) {
	t.Parallel()
	r := newTimeoutReader(setup(t, nil))
	for _, v := range []string{"+500", "-0", "-5", " 500", "500 ", "500ms", "5e2", "0x10", "1_000", "５", "٥"} {
		requireTimeoutProblem(t, r.serve(v), v)
	}
	for _, vs := range [][]string{{"100", "200"}, {"100", "100"}, {"0", ""}} {
		requireTimeoutProblem(t, r.serve(vs...), vs[1])
	}
	require.Zero(t, r.ran, "the handler ran for a refused header")

	require.Equal(t, http.StatusOK, r.serve("100").Code, "sent once, the same value is fine")
	require.Equal(t, http.StatusOK, r.serve("").Code, "an empty header is no header")
}

// FuzzMiddlewareTimeout checks HeaderTimeout's promise for any value: the
// digits 0-9 alone reach the handler, labelled; anything else non-empty is
// a 400 problem naming the header, and the handler does not run.
func FuzzMiddlewareTimeout(f *testing.F) {
	for _, s := range []string{
		"0", "500", "9223372036854775807", "9223372036854775808", "99999999999999999999", strings.Repeat("9", 40),
		"+500", "-0", "-1", " 1", "1 ", "1.5", "1e3", "500ms", "٥", "\x00", "0\r\n",
	} {
		f.Add(s)
	}
	r := newTimeoutReader(setupFuzzTracker(f))
	f.Fuzz(func(t *testing.T, raw string) {
		if raw == "" {
			return // no header
		}
		ran := r.ran
		rec := r.serve(raw)
		if strings.Trim(raw, "0123456789") == "" {
			require.Equal(t, http.StatusOK, rec.Code, "X-Consistency-Timeout %q: %s", raw, rec.Body.String())
			require.Equal(t, ran+1, r.ran)
			return
		}
		require.Equal(t, ran, r.ran, "the handler ran for %q", raw)
		require.Equal(t, http.StatusBadRequest, rec.Code, "X-Consistency-Timeout %q", raw)
		var p problemBody
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p), "the problem is JSON: %q", rec.Body.String())
		require.Equal(t, consistency.ProblemInvalidTimeout, p.Type)
		require.Equal(t, consistency.HeaderTimeout, p.Parameter)
	})
}
