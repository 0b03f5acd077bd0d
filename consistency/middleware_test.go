package consistency_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// httpApp is a tiny application: POST /orders appends an event, a
// projection goroutine applies it to the read model a moment later, and
// GET /orders reads the read model through Middleware.
type httpApp struct {
	tr  *consistency.Tracker
	srv *httptest.Server

	mu      sync.Mutex
	next    uint64
	orders  int // the read model
	handled chan struct{}
}

// orderCount is the body of GET /orders.
type orderCount struct {
	Orders int  `json:"orders"`
	Stale  bool `json:"stale"`
	Seen   bool `json:"seen"`
}

func setupHTTP(t *testing.T, cfg *consistency.TrackerConfig) *httpApp {
	t.Helper()
	app := &httpApp{tr: setup(t, cfg), handled: make(chan struct{}, 100)}
	appended := make(chan events.Token, 100)
	projectionDone := make(chan struct{})
	go func() { // the projection
		defer close(projectionDone)
		for pos := range appended {
			app.mu.Lock()
			app.orders++
			app.mu.Unlock()
			app.tr.Advance("orders", pos)
		}
	}()

	reads := consistency.Middleware(app.tr, &consistency.HTTPConfig{
		Projections: func(r *http.Request) []string {
			if r.URL.Path == "/unmapped" {
				return nil
			}
			return []string{"orders"}
		},
	})
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, 1<<10)
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			consistency.WriteProblem(w, http.StatusRequestEntityTooLarge, "", err.Error())
			return
		}
		app.mu.Lock()
		app.next++
		pos := tok(app.next)
		app.mu.Unlock()
		appended <- pos
		consistency.SetPosition(w, pos)
		w.WriteHeader(http.StatusAccepted)
	})
	readOrders := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			select {
			case app.handled <- struct{}{}:
			default:
			}
		}()
		if _, ok := w.(http.Flusher); !ok {
			t.Error("Middleware hid http.Flusher")
		}
		st, seen := consistency.StatusFromContext(r.Context())
		app.mu.Lock()
		body := orderCount{Orders: app.orders, Stale: st.Stale, Seen: seen}
		app.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(body)
	})
	mux.Handle("GET /orders", reads(readOrders))
	mux.Handle("GET /unmapped", reads(readOrders))
	mux.Handle("PUT /orders", reads(readOrders))
	app.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		app.srv.Close()
		close(appended)
		<-projectionDone
	})
	return app
}

func (app *httpApp) do(t *testing.T, ctx context.Context, method, path string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, app.srv.URL+path, nil)
	require.NoError(t, err)
	for k, vs := range header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := app.srv.Client().Do(req)
	require.NoError(t, err)
	t.Cleanup(func() { _ = resp.Body.Close() })
	return resp
}

func decode[T any](t *testing.T, resp *http.Response) T {
	t.Helper()
	var v T
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&v))
	return v
}

func TestMiddleware_ReadYourOwnWrite(t *testing.T) {
	t.Parallel()
	app := setupHTTP(t, &consistency.TrackerConfig{DefaultTimeout: 5 * time.Second})

	for want := 1; want <= 3; want++ {
		write := app.do(t, context.Background(), http.MethodPost, "/orders", nil)
		require.Equal(t, http.StatusAccepted, write.StatusCode)
		written := write.Header.Get(consistency.HeaderPosition)
		require.NotEmpty(t, written, "writes return their position")

		read := app.do(t, context.Background(), http.MethodGet, "/orders", http.Header{consistency.HeaderPosition: {written}})
		require.Equal(t, http.StatusOK, read.StatusCode)
		require.Equal(t, "false", read.Header.Get(consistency.HeaderStale))
		pos, err := events.ParseToken(read.Header.Get(consistency.HeaderPosition))
		require.NoError(t, err)
		wrote, err := events.ParseToken(written)
		require.NoError(t, err)
		require.False(t, pos.Before(wrote), "the read reflects the write")

		body := decode[orderCount](t, read)
		require.Equal(t, want, body.Orders, "the read sees its own write")
		require.True(t, body.Seen, "the Status reaches the handler")
		require.False(t, body.Stale)
	}
}

func TestMiddleware_QueryParam(t *testing.T) {
	t.Parallel()
	app := setupHTTP(t, &consistency.TrackerConfig{DefaultTimeout: 5 * time.Second})
	written := app.do(t, context.Background(), http.MethodPost, "/orders", nil).Header.Get(consistency.HeaderPosition)

	read := app.do(t, context.Background(), http.MethodGet, "/orders?"+consistency.QueryParam+"="+url.QueryEscape(written), nil)
	require.Equal(t, http.StatusOK, read.StatusCode)
	require.Equal(t, "false", read.Header.Get(consistency.HeaderStale))
	require.Equal(t, 1, decode[orderCount](t, read).Orders)

	// The same token in both places is fine.
	both := app.do(t, context.Background(), http.MethodGet, "/orders?"+consistency.QueryParam+"="+url.QueryEscape(written),
		http.Header{consistency.HeaderPosition: {written}})
	require.Equal(t, http.StatusOK, both.StatusCode)
}

func TestMiddleware_TokenAhead(t *testing.T) {
	t.Parallel()
	app := setupHTTP(t, &consistency.TrackerConfig{MaxTimeout: 50 * time.Millisecond})
	app.tr.Advance("orders", tok(3))
	ahead := events.MakeToken(1<<62, 0).String()

	start := time.Now()
	read := app.do(t, context.Background(), http.MethodGet, "/orders", http.Header{consistency.HeaderPosition: {ahead}})
	require.Equal(t, http.StatusOK, read.StatusCode, "a token from the future is answered, stale")
	require.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond, "it waited out the deadline")
	require.Less(t, time.Since(start), 30*time.Second, "a token from the future must not hang the read")
	require.Equal(t, "true", read.Header.Get(consistency.HeaderStale))
	require.Equal(t, tok(3).String(), read.Header.Get(consistency.HeaderPosition), "the position the read does reflect")
	require.True(t, decode[orderCount](t, read).Stale)
}

func TestMiddleware_TimeoutHeader(t *testing.T) {
	t.Parallel()
	app := setupHTTP(t, &consistency.TrackerConfig{MaxTimeout: time.Minute, DefaultTimeout: time.Minute})
	ahead := events.MakeToken(1<<62, 0).String()

	start := time.Now()
	read := app.do(t, context.Background(), http.MethodGet, "/orders", http.Header{
		consistency.HeaderPosition: {ahead},
		consistency.HeaderTimeout:  {"0"},
	})
	require.Equal(t, http.StatusOK, read.StatusCode)
	require.Equal(t, "true", read.Header.Get(consistency.HeaderStale))
	require.Less(t, time.Since(start), 30*time.Second, "X-Consistency-Timeout: 0 does not wait for the one-minute default")

	bad := app.do(t, context.Background(), http.MethodGet, "/orders", http.Header{
		consistency.HeaderPosition: {ahead},
		consistency.HeaderTimeout:  {"soon"},
	})
	p := requireProblem(t, bad, consistency.ProblemInvalidTimeout)
	require.Equal(t, consistency.HeaderTimeout, p.Parameter)
	require.Equal(t, "soon", p.Value)
}

// TestMiddleware_TimeoutHeaderSetsTheWait: X-Consistency-Timeout replaces
// DefaultTimeout in both directions, within MaxTimeout; a negative one is
// refused like a malformed one.
func TestMiddleware_TimeoutHeaderSetsTheWait(t *testing.T) {
	t.Parallel()
	ahead := events.MakeToken(1<<62, 0).String()
	read := func(t *testing.T, app *httpApp, timeout string) (*http.Response, time.Duration) {
		t.Helper()
		start := time.Now()
		resp := app.do(t, context.Background(), http.MethodGet, "/orders", http.Header{
			consistency.HeaderPosition: {ahead},
			consistency.HeaderTimeout:  {timeout},
		})
		return resp, time.Since(start)
	}

	t.Run("Longer", func(t *testing.T) {
		t.Parallel()
		app := setupHTTP(t, &consistency.TrackerConfig{DefaultTimeout: 10 * time.Millisecond, MaxTimeout: time.Minute})
		resp, took := read(t, app, "400")
		require.Equal(t, "true", resp.Header.Get(consistency.HeaderStale))
		require.GreaterOrEqual(t, took, 400*time.Millisecond, "the header's wait replaces a shorter default")
	})
	t.Run("Shorter", func(t *testing.T) {
		t.Parallel()
		app := setupHTTP(t, &consistency.TrackerConfig{DefaultTimeout: time.Minute, MaxTimeout: time.Minute})
		resp, took := read(t, app, "150")
		require.Equal(t, "true", resp.Header.Get(consistency.HeaderStale))
		require.GreaterOrEqual(t, took, 150*time.Millisecond)
		require.Less(t, took, 30*time.Second, "the header's wait replaces a longer default")
	})
	t.Run("CappedByMaxTimeout", func(t *testing.T) {
		t.Parallel()
		app := setupHTTP(t, &consistency.TrackerConfig{DefaultTimeout: 10 * time.Millisecond, MaxTimeout: 200 * time.Millisecond})
		resp, took := read(t, app, "3600000")
		require.Equal(t, "true", resp.Header.Get(consistency.HeaderStale))
		require.GreaterOrEqual(t, took, 200*time.Millisecond)
		require.Less(t, took, 30*time.Second, "an hour asked for, MaxTimeout given")
	})
	t.Run("Negative", func(t *testing.T) {
		t.Parallel()
		app := setupHTTP(t, nil)
		resp, _ := read(t, app, "-5")
		p := requireProblem(t, resp, consistency.ProblemInvalidTimeout)
		require.Equal(t, "-5", p.Value)
	})
}

func TestMiddleware_BadToken(t *testing.T) {
	t.Parallel()
	app := setupHTTP(t, nil)

	for name, tc := range map[string]struct {
		header    http.Header
		query     string
		wantType  string
		wantParam string
		wantValue string
	}{
		"Malformed": {
			header:   http.Header{consistency.HeaderPosition: {"garbage"}},
			wantType: consistency.ProblemInvalidToken, wantParam: consistency.HeaderPosition, wantValue: "garbage",
		},
		"Truncated": {
			header:   http.Header{consistency.HeaderPosition: {"v2.AAAA"}},
			wantType: consistency.ProblemInvalidToken, wantParam: consistency.HeaderPosition, wantValue: "v2.AAAA",
		},
		"OtherVersion": {
			header:   http.Header{consistency.HeaderPosition: {"v3.AAAAAAAAAAAAAAAAAAAAAA"}},
			wantType: consistency.ProblemTokenVersion, wantParam: consistency.HeaderPosition, wantValue: "v3.AAAAAAAAAAAAAAAAAAAAAA",
		},
		"MalformedQuery": {
			query:    "?" + consistency.QueryParam + "=nope",
			wantType: consistency.ProblemInvalidToken, wantParam: consistency.QueryParam, wantValue: "nope",
		},
		"Conflicting": {
			header:   http.Header{consistency.HeaderPosition: {tok(1).String()}},
			query:    "?" + consistency.QueryParam + "=" + tok(2).String(),
			wantType: consistency.ProblemInvalidToken, wantParam: consistency.QueryParam, wantValue: tok(2).String(),
		},
		"RepeatedQuery": {
			query:    "?" + consistency.QueryParam + "=" + tok(1).String() + "&" + consistency.QueryParam + "=" + tok(1).String(),
			wantType: consistency.ProblemInvalidToken, wantParam: consistency.QueryParam, wantValue: tok(1).String(),
		},
		"Repeated": {
			header:   http.Header{consistency.HeaderPosition: {tok(1).String(), tok(2).String()}},
			wantType: consistency.ProblemInvalidToken, wantParam: consistency.HeaderPosition, wantValue: tok(2).String(),
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			resp := app.do(t, context.Background(), http.MethodGet, "/orders"+tc.query, tc.header)
			p := requireProblem(t, resp, tc.wantType)
			require.Equal(t, tc.wantParam, p.Parameter)
			require.Equal(t, tc.wantValue, p.Value)
		})
	}
}

func TestMiddleware_PassThrough(t *testing.T) {
	t.Parallel()
	app := setupHTTP(t, nil)
	app.tr.Advance("orders", tok(8))

	t.Run("NoToken", func(t *testing.T) {
		t.Parallel()
		read := app.do(t, context.Background(), http.MethodGet, "/orders", nil)
		require.Equal(t, http.StatusOK, read.StatusCode)
		require.Equal(t, "false", read.Header.Get(consistency.HeaderStale))
		require.Equal(t, tok(8).String(), read.Header.Get(consistency.HeaderPosition), "labelled with the current checkpoint")
		require.True(t, decode[orderCount](t, read).Seen)
	})

	t.Run("Head", func(t *testing.T) {
		t.Parallel()
		read := app.do(t, context.Background(), http.MethodHead, "/orders", http.Header{consistency.HeaderPosition: {tok(8).String()}})
		require.Equal(t, http.StatusOK, read.StatusCode)
		require.Equal(t, "false", read.Header.Get(consistency.HeaderStale))
	})

	t.Run("OtherMethodsUntouched", func(t *testing.T) {
		t.Parallel()
		resp := app.do(t, context.Background(), http.MethodPut, "/orders", http.Header{consistency.HeaderPosition: {"garbage"}})
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Empty(t, resp.Header.Get(consistency.HeaderStale))
		require.False(t, decode[orderCount](t, resp).Seen)
	})

	t.Run("UnmappedRoute", func(t *testing.T) {
		t.Parallel()
		resp := app.do(t, context.Background(), http.MethodGet, "/unmapped", nil)
		require.Equal(t, http.StatusOK, resp.StatusCode)
		require.Empty(t, resp.Header.Get(consistency.HeaderStale))
	})
}

func TestMiddleware_ClientGoesAway(t *testing.T) {
	t.Parallel()
	app := setupHTTP(t, &consistency.TrackerConfig{MaxTimeout: time.Minute, DefaultTimeout: time.Minute})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, app.srv.URL+"/orders", nil)
		if err != nil {
			errc <- err
			return
		}
		req.Header.Set(consistency.HeaderPosition, tok(99).String())
		resp, err := app.srv.Client().Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		errc <- err
	}()
	awaitParked(t, app.tr, func() bool { return app.tr.Waiting("orders") == 1 })
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	awaitParked(t, app.tr, func() bool { return app.tr.Stats().Waiters == 0 })
	select {
	case <-app.handled:
		t.Fatal("the handler ran for a client that had gone")
	default:
	}
}

func TestMiddleware_Misconfigured(t *testing.T) {
	t.Parallel()
	tr := setup(t, nil)
	require.Panics(t, func() { consistency.Middleware(tr, nil) })
	require.Panics(t, func() { consistency.Middleware(tr, &consistency.HTTPConfig{}) })
	require.Panics(t, func() { consistency.Middleware(nil, &consistency.HTTPConfig{Names: []string{"orders"}}) })
	require.Panics(t, func() { consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"orders", ""}}) })
}

func TestMiddleware_EmptyNameIsA500(t *testing.T) {
	t.Parallel()
	tr := setup(t, nil)
	h := consistency.Middleware(tr, &consistency.HTTPConfig{
		Projections: func(*http.Request) []string { return []string{""} },
	})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("handler ran") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusInternalServerError, rec.Code)
	require.Equal(t, consistency.ContentTypeProblem, rec.Header().Get("Content-Type"))
	require.Contains(t, rec.Body.String(), "misconfigured")
}

func TestMiddleware_StaticNames(t *testing.T) {
	t.Parallel()
	tr := setup(t, nil)
	tr.Advance("a", tok(4))
	tr.Advance("b", tok(2))
	h := consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"a", "b"}})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st, ok := consistency.StatusFromContext(r.Context())
		require.True(t, ok)
		_, _ = io.WriteString(w, strconv.FormatBool(st.Stale))
	}))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "/", nil)
	req.Header.Set(consistency.HeaderPosition, tok(2).String())
	h.ServeHTTP(rec, req)
	require.Equal(t, "false", rec.Body.String())
	require.Equal(t, tok(2).String(), rec.Header().Get(consistency.HeaderPosition), "the lowest checkpoint of the names")
}

// problemBody mirrors the RFC 9457 fields the tests check.
type problemBody struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Parameter string `json:"parameter"`
	Value     string `json:"value"`
}

func requireProblem(t *testing.T, resp *http.Response, wantType string) problemBody {
	t.Helper()
	require.Equal(t, http.StatusBadRequest, resp.StatusCode)
	require.Equal(t, consistency.ContentTypeProblem, resp.Header.Get("Content-Type"))
	p := decode[problemBody](t, resp)
	require.Equal(t, wantType, p.Type)
	require.Equal(t, http.StatusBadRequest, p.Status)
	require.NotEmpty(t, p.Title)
	require.NotEmpty(t, p.Detail)
	return p
}
