package consistency_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// FuzzMiddlewareToken checks the Middleware's promise for any token a
// client sends, in the header or the query: one that does not parse is a
// 400 application/problem+json naming the parameter, and the handler never
// runs; one that parses reaches the handler, labelled. The read model is
// at the last possible position, so no valid token makes the read wait.
func FuzzMiddlewareToken(f *testing.F) {
	good := events.MakeToken(7, 9).String()
	for _, s := range []string{
		good, events.Token{}.String(), events.MakeToken(math.MaxUint64, math.MaxUint64).String(),
		"", "garbage", good[:len(good)-1], good + "A", "v1." + good[3:], "v3." + good[3:], "v2." + good[4:] + "+",
		"V2." + good[3:], " " + good, good + "\t", "v2.0000000\r00000\r00000000", "v2.'; DROP TABLE events;--",
		"v2.\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00", "v2.ééééééééééé",
	} {
		f.Add(s, false)
		f.Add(s, true)
	}
	tr := setupFuzzTracker(f)
	tr.Advance("orders", events.MakeToken(math.MaxUint64, math.MaxUint64))
	f.Fuzz(func(t *testing.T, raw string, inQuery bool) {
		ran := false
		h := consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"orders"}})(
			http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ran = true
				_, labelled := consistency.StatusFromContext(r.Context())
				require.True(t, labelled, "the handler gets the read's Status")
			}))
		req := httptest.NewRequest(http.MethodGet, "/orders", nil)
		param := consistency.HeaderPosition
		if inQuery {
			param = consistency.QueryParam
			req.URL.RawQuery = url.Values{consistency.QueryParam: {raw}}.Encode()
		} else {
			req.Header[consistency.HeaderPosition] = []string{raw}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)

		_, parseErr := events.ParseToken(raw)
		if parseErr == nil {
			require.True(t, ran, "a valid token reaches the handler")
			require.Equal(t, http.StatusOK, rec.Code)
			require.Equal(t, "false", rec.Header().Get(consistency.HeaderStale))
			return
		}
		require.False(t, ran, "the handler ran for the bad token %q", raw)
		require.Equal(t, http.StatusBadRequest, rec.Code, "bad token %q", raw)
		require.Equal(t, consistency.ContentTypeProblem, rec.Header().Get("Content-Type"))
		var p problemBody
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p), "the problem is JSON: %q", rec.Body.String())
		wantType := consistency.ProblemInvalidToken
		if errors.Is(parseErr, events.ErrTokenVersion) {
			wantType = consistency.ProblemTokenVersion
		}
		require.Equal(t, wantType, p.Type, "bad token %q", raw)
		require.Equal(t, http.StatusBadRequest, p.Status)
		require.Equal(t, param, p.Parameter)
		require.NotEmpty(t, p.Title)
		require.NotEmpty(t, p.Detail)
		if utf8.ValidString(raw) && len(raw) <= 128 {
			require.Equal(t, raw, p.Value, "the problem shows what the client sent")
		}
	})
}

// setupFuzzTracker is setup for a fuzz target: one tracker for every input.
func setupFuzzTracker(f *testing.F) *consistency.Tracker {
	f.Helper()
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{MaxTimeout: time.Second})
	require.NoError(f, err)
	require.NoError(f, tr.Start(context.Background()))
	f.Cleanup(func() { require.NoError(f, tr.Stop(context.Background())) })
	return tr
}

// TestMiddleware_TimeoutHeaderNeverLengthensTheWait: X-Consistency-Timeout
// may shorten a wait, never lengthen it past TrackerConfig.MaxTimeout,
// however many digits the client sends, past int64's range included. The
// read of a token no projection reaches must come back stale rather than
// hang for a day.
func TestMiddleware_TimeoutHeaderNeverLengthensTheWait(t *testing.T) {
	t.Parallel()
	app := setupHTTP(t, &consistency.TrackerConfig{MaxTimeout: 20 * time.Millisecond})
	ahead := events.MakeToken(1<<62, 0).String()
	for _, ms := range []string{
		"86400000", strconv.FormatInt(math.MaxInt64, 10), "9223372036854775808",
		"1" + strconv.FormatInt(math.MaxInt64, 10), "99999999999999999999", strings.Repeat("9", 40),
	} {
		// A hang is a failure, not a test that runs for a day.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		read := app.do(t, ctx, http.MethodGet, "/orders", http.Header{
			consistency.HeaderPosition: {ahead},
			consistency.HeaderTimeout:  {ms},
		})
		require.Equal(t, http.StatusOK, read.StatusCode, "X-Consistency-Timeout: %s", ms)
		require.Equal(t, "true", read.Header.Get(consistency.HeaderStale), "X-Consistency-Timeout: %s", ms)
	}
}
