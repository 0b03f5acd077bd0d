package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/examples/orders/web"
	"github.com/converge-es/converge/internal/pgtest"
)

// startServe runs `converge args...` until the test ends and returns the
// address it listens on. Cleanup stops it as SIGINT would and checks it
// exits cleanly.
func startServe(t *testing.T, args ...string) string {
	t.Helper()
	addr, stop := startServeStoppable(t, args...)
	t.Cleanup(func() { require.NoError(t, stop()) })
	return addr
}

// startServeStoppable is startServe with the stop in the test's hands:
// stop cancels the command's context, as SIGINT would, and returns what
// the command returned. It may be called more than once.
func startServeStoppable(t *testing.T, args ...string) (string, func() error) {
	t.Helper()
	pr, pw := io.Pipe()
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(pw)
	root.SetErr(io.Discard)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- root.ExecuteContext(ctx); _ = pw.Close() }()
	var once sync.Once
	var result error
	stop := func() error {
		once.Do(func() {
			cancel()
			result = <-done
		})
		return result
	}
	line, err := bufio.NewReader(pr).ReadString('\n')
	if err != nil {
		_ = stop()
		require.NoError(t, err, "serve did not say where it listens")
	}
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening on ")
	require.True(t, ok, "line %q", line)
	bound, err := netip.ParseAddrPort(addr)
	require.NoError(t, err, "line %q", line)
	require.True(t, bound.Addr().IsLoopback(), "line %q", line)
	return addr, stop
}

func TestServe_StopsGracefullyWithLiveClients(t *testing.T) {
	t.Parallel()
	addr, stop := startServeStoppable(t, "serve", "--listen", "127.0.0.1:0")
	t.Cleanup(func() { _ = stop() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws://"+addr+"/live/orders?entity=o-1", nil)
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	require.NoError(t, err)
	defer func() { _ = conn.CloseNow() }()
	_, msg, err := conn.Read(ctx)
	require.NoError(t, err)
	require.Contains(t, string(msg), `"subscribed"`)

	// A live connection does not hold the shutdown up, and is told why it
	// ends. The client keeps reading, as a browser does, so it answers the
	// close handshake.
	ended := make(chan error, 1)
	go func() {
		_, _, err := conn.Read(ctx)
		ended <- err
	}()
	// A shutdown that waited out the close handshake would take at least
	// the hub's WriteTimeout (serve leaves it at the default) after start:
	// anything shorter proves it did not, however slow the rest of the
	// shutdown was.
	start := time.Now()
	require.NoError(t, stop())
	require.Less(t, time.Since(start), live.DefaultWriteTimeout, "the shutdown waited out the close handshake")
	err = <-ended
	require.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "read ended with %v", err)
}

// fetch does one request and returns the status, headers and body.
func fetch(t *testing.T, method, url string, header http.Header, body string) (int, http.Header, string) {
	t.Helper()
	return fetchCtx(t.Context(), t, method, url, header, body)
}

// fetchCtx is fetch for the condition of an EventuallyWithT: t may be its
// CollectT, and ctx is the test's.
func fetchCtx(ctx context.Context, t require.TestingT, method, url string, header http.Header, body string) (int, http.Header, string) {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

// lagReports waits until /lag reports name and returns the reports.
func lagReports(t *testing.T, base, name string) map[string]map[string]any {
	t.Helper()
	byName := map[string]map[string]any{}
	ctx := t.Context()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, _, body := fetchCtx(ctx, c, http.MethodGet, base+"/lag", nil, "")
		require.Equal(c, http.StatusOK, code, body)
		var reports []map[string]any
		require.NoError(c, json.Unmarshal([]byte(body), &reports))
		for _, r := range reports {
			name, _ := r["projection"].(string)
			byName[name] = r
		}
		assert.Contains(c, byName, name, "reports %s", body)
	}, 10*time.Second, 20*time.Millisecond)
	return byName
}

func TestServe_InMemoryServesTheWorkflow(t *testing.T) {
	t.Parallel()
	base := "http://" + startServe(t, "serve", "--listen", "127.0.0.1:0", "--interval", "100ms", "--sla", "7s")

	code, h, body := fetch(t, http.MethodGet, base+"/", nil, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, h.Get("Content-Type"), "text/html")
	require.Contains(t, body, `id="order-form"`)
	code, _, body = fetch(t, http.MethodGet, base+"/dashboard", nil, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `id="lag-charts"`)

	code, h, body = fetch(t, http.MethodPost, base+"/orders", http.Header{"Content-Type": {"application/json"}}, `{"customer_id":"c-1","sku":"tea","qty":2,"card":"4242-4242-4242-4242"}`)
	require.Equal(t, http.StatusAccepted, code, body)
	var placed struct {
		OrderID string `json:"order_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &placed))
	code, _, body = fetch(t, http.MethodGet, base+"/orders/"+placed.OrderID,
		http.Header{consistency.HeaderPosition: {h.Get(consistency.HeaderPosition)}, consistency.HeaderTimeout: {"10000"}}, "")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"customer_id":"c-1"`)
	awaitConfirmed(t, base, placed.OrderID)

	// SLAs are the declared ones: order_summary says 2s, customer_spending
	// 30s; the strong customer_orders declares none and gets --sla.
	reports := lagReports(t, base, "order_summary")
	require.EqualValues(t, 2, reports["order_summary"]["sla_seconds"], "report %v", reports["order_summary"])
	require.EqualValues(t, 30, reports["customer_spending"]["sla_seconds"])
	require.EqualValues(t, 7, reports["customer_orders"]["sla_seconds"])

	code, _, body = fetch(t, http.MethodGet, base+"/metrics", nil, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `converge_projection_position_lag_events{projection="order_summary"}`)
	require.Contains(t, body, `converge_saga_steps_total{`, "the saga engine's metrics")
	require.Contains(t, body, `converge_saga_gated_steps_total 1`, "the client's gate counts")
	require.Contains(t, body, "\ngo_goroutines ", "Go's metrics")
	code, _, body = fetch(t, http.MethodGet, base+"/api/sagas?status=completed", nil, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, placed.OrderID, "the dashboard lists the completed fulfilment")
	code, _, _ = fetch(t, http.MethodGet, base+"/healthz", nil, "")
	require.Equal(t, http.StatusOK, code)
	code, _, body = fetch(t, http.MethodGet, base+"/read-models", nil, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `"order_summary"`)
}

// TestServe_DemoLoadPlacesOrders: --demo-load places orders, which the
// dashboard lists and which read back, with their customers' lists, like
// any order; its customers are its own, not the page's c-1.
func TestServe_DemoLoadPlacesOrders(t *testing.T) {
	t.Parallel()
	base := "http://" + startServe(t, "serve", "--listen", "127.0.0.1:0", "--demo-load", "200")
	ctx := t.Context()
	var id string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, _, body := fetchCtx(ctx, c, http.MethodGet, base+"/api/sagas?limit=1", nil, "")
		require.Equal(c, http.StatusOK, code, body)
		var list struct {
			Sagas []struct {
				ID string `json:"id"`
			} `json:"sagas"`
		}
		require.NoError(c, json.Unmarshal([]byte(body), &list))
		require.NotEmpty(c, list.Sagas, "no order yet")
		id = list.Sagas[0].ID
	}, 10*time.Second, 20*time.Millisecond)
	var order struct {
		CustomerID string `json:"customer_id"`
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, _, body := fetchCtx(ctx, c, http.MethodGet, base+"/orders/"+id, nil, "")
		require.Equal(c, http.StatusOK, code, body)
		require.NoError(c, json.Unmarshal([]byte(body), &order))
	}, 10*time.Second, 20*time.Millisecond)
	require.True(t, strings.HasPrefix(order.CustomerID, "load-"), "a simulated customer: %q", order.CustomerID)
	code, _, body := fetch(t, http.MethodGet, base+"/orders?customer="+order.CustomerID, nil, "")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, `"order_id":"`+id+`"`, "the customer's list has the order")
	code, _, body = fetch(t, http.MethodGet, base+"/orders?customer=c-1", nil, "")
	require.Equal(t, http.StatusOK, code, body)
	require.NotContains(t, body, `"order_id"`, "the load leaves the page's customer alone")
}

// awaitConfirmed waits until GET /orders/{id} shows the order confirmed.
func awaitConfirmed(t *testing.T, base, id string) {
	t.Helper()
	ctx := t.Context()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, _, body := fetchCtx(ctx, c, http.MethodGet, base+"/orders/"+id, nil, "")
		assert.Equal(c, http.StatusOK, code, body)
		assert.Contains(c, body, `"status":"confirmed"`)
	}, 30*time.Second, 20*time.Millisecond, "the fulfilment saga confirms the order")
}

func TestServe_OnPostgreSQL(t *testing.T) {
	t.Parallel()
	// An empty schema: serve migrates it first.
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	base := "http://" + startServe(t, "serve", "--database-url", db.URL, "--schema", db.Schema, "--listen", "127.0.0.1:0", "--interval", "100ms")

	code, h, body := fetch(t, http.MethodPost, base+"/orders", http.Header{"Content-Type": {"application/json"}}, `{"customer_id":"c-1","sku":"tea","qty":2,"card":"4242-4242-4242-4242"}`)
	require.Equal(t, http.StatusAccepted, code, body)
	code, _, body = fetch(t, http.MethodGet, base+h.Get("Location"), http.Header{consistency.HeaderTimeout: {"10000"}}, "")
	require.Equal(t, http.StatusOK, code, body)
	var placed struct {
		OrderID string `json:"order_id"`
	}
	require.NoError(t, json.Unmarshal([]byte(body), &placed))
	awaitConfirmed(t, base, placed.OrderID)

	reports := lagReports(t, base, "order_summary")
	require.EqualValues(t, 2, reports["order_summary"]["sla_seconds"])
	code, _, body = fetch(t, http.MethodGet, base+"/metrics", nil, "")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `converge_projection_position_lag_events{projection="order_summary"}`)
	require.Contains(t, body, `converge_saga_steps_total{`)
	// A lag pass 100 ms apart is overdue after 300 ms, which a loaded
	// machine can exceed for a moment: /healthz then rightly says 503.
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		code, _, body := fetchCtx(t.Context(), c, http.MethodGet, base+"/healthz", nil, "")
		assert.Equal(c, http.StatusOK, code, body)
	}, 10*time.Second, 20*time.Millisecond, "/healthz says ok")
}

// TestServeDefaults: what `converge serve` does without flags, as its help
// and the README say: it runs in memory, even with DATABASE_URL set (here
// to a server that is not there), on 127.0.0.1:9090. Not parallel: it
// sets DATABASE_URL for the process.
func TestServeDefaults(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none?connect_timeout=5")
	serve, _, err := newRootCmd().Find([]string{"serve"})
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9090", serve.Flag("listen").DefValue)
	require.Contains(t, serve.Example, "open http://127.0.0.1:9090/")
	base := "http://" + startServe(t, "serve", "--listen", "127.0.0.1:0")
	code, _, _ := fetch(t, http.MethodGet, base+"/healthz", nil, "")
	require.Equal(t, http.StatusOK, code)
}

func TestServeRejectsBadFlags(t *testing.T) {
	t.Parallel()
	for _, tc := range [][]string{
		{"--listen", "nonsense"},
		{"--sla", "0s"},
		{"--interval", "-1s"},
		{"--demo-load", "-1"},
		{"--demo-load", "NaN"},
		{"--demo-load", "1001"},
		{"--allow-host", "shop.example:80"},
	} {
		_, err := runCLI(t, append([]string{"serve"}, tc...)...)
		require.ErrorContains(t, err, tc[0])
	}
}

// TestServeRefusesDemoLoadBelowTheLeast: a --demo-load above 0 but below
// web.MinLoadRate, down to the smallest float, is refused naming the least
// rate, before serve binds anything; the least itself is served.
func TestServeRefusesDemoLoadBelowTheLeast(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 8))
	for range 50 {
		rate := math.Exp(math.Log(math.SmallestNonzeroFloat64) + rng.Float64()*(math.Log(web.MinLoadRate)-math.Log(math.SmallestNonzeroFloat64)))
		rate = min(rate, web.MinLoadRate*(1-1e-9))
		text := strconv.FormatFloat(rate, 'g', -1, 64)
		// Bounded: a serve that took the rate would run until stopped.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		var out bytes.Buffer
		root := newRootCmd()
		root.SetArgs([]string{"serve", "--listen", "127.0.0.1:0", "--demo-load", text})
		root.SetOut(&out)
		root.SetErr(&out)
		err := execute(ctx, root)
		cancel()
		require.ErrorContains(t, err, "--demo-load "+text+": use orders per second from 1e-06 to 1000, or 0 (off)")
		require.NotContains(t, out.String(), "listening on")
	}
	startServe(t, "serve", "--listen", "127.0.0.1:0", "--demo-load", "1e-6")
}

// downInspector is a store whose database can be taken down: every
// query fails while down is set.
type downInspector struct {
	feed.Inspector
	down atomic.Bool
}

var errDown = errors.New("database down")

func (d *downInspector) Head(ctx context.Context) (events.Token, error) {
	if d.down.Load() {
		return events.Token{}, errDown
	}
	return d.Inspector.Head(ctx)
}

// healthz runs one lag pass of mon (an error is what some cases want) and
// returns what /healthz of the ops mux then answers.
func healthz(t *testing.T, h http.Handler, mon *lag.Monitor) (int, string) {
	t.Helper()
	_, _ = mon.Check(t.Context())
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/healthz", nil))
	return rec.Code, rec.Body.String()
}

// TestServeHealthz: serve's /healthz is 200 while the last lag pass
// succeeded and no projection, saga processor or command handler breaches
// its SLA, 503 otherwise, saying which.
func TestServeHealthz(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	_, err = store.Append(t.Context(), "s-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "ticked", Payload: []byte(`{}`)}})
	require.NoError(t, err)

	mux := func(t *testing.T, insp feed.Inspector, sla time.Duration, class ...string) (http.Handler, *lag.Monitor) {
		t.Helper()
		tg := lag.Target{Name: "p", SLA: sla}
		if len(class) > 0 {
			tg.Class = class[0]
		}
		mon, err := lag.NewMonitor(insp, &lag.Config{Projections: []lag.Target{tg}, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		return opsMux(prometheus.NewRegistry(), mon, http.NotFoundHandler()), mon
	}

	t.Run("passes", func(t *testing.T) {
		t.Parallel()
		insp := &downInspector{Inspector: store}
		h, mon := mux(t, insp, time.Hour)
		// /healthz answers for the pass that just ended.
		await := func(code int, body string) {
			t.Helper()
			c, b := healthz(t, h, mon)
			require.Equal(t, code, c, b)
			require.Equal(t, body, b)
		}
		insp.down.Store(true)
		await(http.StatusServiceUnavailable, "the last lag pass failed (it has not succeeded yet; the log says why)\n")
		insp.down.Store(false)
		await(http.StatusOK, "ok\n")
		last := mon.Reports()[0].At
		insp.down.Store(true)
		await(http.StatusServiceUnavailable, "the last lag pass failed (the last success was at "+last.UTC().Format(time.RFC3339)+"; the log says why)\n")
		insp.down.Store(false)
		await(http.StatusOK, "ok\n")
	})
	t.Run("breach", func(t *testing.T) {
		t.Parallel()
		// p has not processed the event, which has waited longer than 1ns.
		h, mon := mux(t, store, time.Nanosecond)
		code, body := healthz(t, h, mon)
		require.Equal(t, http.StatusServiceUnavailable, code)
		require.Contains(t, body, "projection p breaches its SLA")
	})
	t.Run("breach of a saga processor or a command handler", func(t *testing.T) {
		t.Parallel()
		for class, says := range map[string]string{"saga": "saga processor p", "command": "command handler p"} {
			h, mon := mux(t, store, time.Nanosecond, class)
			code, body := healthz(t, h, mon)
			require.Equal(t, http.StatusServiceUnavailable, code)
			require.Contains(t, body, says+" breaches its SLA")
		}
	})
}

// TestServeRefusesAnAddressItCannotBind: an out-of-range port (random) or
// a taken address fails with the --listen error before anything else:
// nothing is printed and the database is not even migrated.
func TestServeRefusesAnAddressItCannotBind(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	taken, err := (&net.ListenConfig{}).Listen(t.Context(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer taken.Close()
	for _, addr := range []string{
		fmt.Sprint("127.0.0.1:", 65536+rng.IntN(1<<30)),
		taken.Addr().String(),
	} {
		out, err := runCLI(t, "serve", "--listen", addr, "--database-url", db.URL, "--schema", db.Schema)
		require.ErrorContains(t, err, "--listen "+addr, addr)
		require.NotContains(t, out, "listening on", addr)
	}
	var migrated bool
	require.NoError(t, db.Pool.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", db.Schema+".events").Scan(&migrated))
	require.False(t, migrated, "serve failed before it migrated the schema")
}

// TestServe_AllowOrigin: `serve --allow-origin` reaches the web server: a
// page on the named site gets CORS headers exposing the consistency
// headers, its preflight is answered, and another site's is refused.
func TestServe_AllowOrigin(t *testing.T) {
	t.Parallel()
	base := "http://" + startServe(t, "serve", "--listen", "127.0.0.1:0", "--allow-origin", "https://shop.example")
	code, h, _ := fetch(t, http.MethodOptions, base+"/orders", http.Header{
		"Origin": {"https://shop.example"}, "Access-Control-Request-Method": {"POST"},
	}, "")
	require.Equal(t, http.StatusNoContent, code)
	require.Equal(t, "https://shop.example", h.Get("Access-Control-Allow-Origin"))
	code, h, _ = fetch(t, http.MethodGet, base+"/orders/o-1", http.Header{"Origin": {"https://shop.example"}}, "")
	require.Equal(t, "https://shop.example", h.Get("Access-Control-Allow-Origin"), "status %d", code)
	require.Contains(t, h.Get("Access-Control-Expose-Headers"), consistency.HeaderPosition)
	code, _, _ = fetch(t, http.MethodOptions, base+"/orders", http.Header{
		"Origin": {"https://evil.example"}, "Access-Control-Request-Method": {"POST"},
	}, "")
	require.Equal(t, http.StatusForbidden, code)
}

// TestServeRefusesSchemaInMemory: --schema means something on PostgreSQL
// only; serve in memory (its default) refuses it before it listens, as the
// demo does, rather than ignoring it.
func TestServeRefusesSchemaInMemory(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--schema", "mine"}, {"--schema=converge"}} {
		out, err := runCLI(t, append([]string{"serve", "--listen", "127.0.0.1:0"}, args...)...)
		require.ErrorContains(t, err, "--schema applies on PostgreSQL only", "serve %v", args)
		require.NotContains(t, out, "listening on", "serve %v listened", args)
	}
}
