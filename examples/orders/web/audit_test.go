package web_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders/web"
)

// TestAuditInvalidReadIsRefusedBeforeWaiting: a read with a malformed id
// or query parameter is refused with a 400 before the consistency wait,
// not after the client's whole timeout, labelled stale.
//
// The tracker has one waiter slot, held by a wait that never ends, so any
// read that waits now is turned away at once and counted in Rejected: the
// count says whether a request tried to wait, without timing it.
func TestAuditInvalidReadIsRefusedBeforeWaiting(t *testing.T) {
	t.Parallel()
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{MaxWaiters: 1, DefaultTimeout: time.Minute, MaxTimeout: time.Minute})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Stop(context.Background()) })
	b := setup(t, func(c *web.Config) { c.Tracker = tr })

	ahead := events.MakeToken(1, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	held := make(chan struct{})
	go func() {
		defer close(held)
		_, _ = tr.Wait(ctx, ahead, readModel)
	}()
	t.Cleanup(func() { cancel(); <-held })
	require.Eventually(t, func() bool { return tr.Stats().Waiters == 1 }, 10*time.Second, time.Millisecond, "the wait holding the slot never blocked")

	h := withToken(ahead)
	h.Set(consistency.HeaderTimeout, "3000")
	for _, path := range []string{
		"/orders/bad'id", "/orders/" + strings.Repeat("a", web.MaxIDLen+1),
		"/orders?customer=c-1&limit=0", "/orders?customer=c%201", "/orders", "/orders?customer=c-1&customer=c-2",
		"/orders?customer=c-1&after=" + strings.Repeat("z", 300),
		"/orders?customer=c-1&after=o%271", // refused by the Orders' CheckCursor
	} {
		r := b.get(t, path, h)
		r.problem(t, http.StatusBadRequest, web.ProblemInvalidParameter)
		require.Empty(t, r.header.Values(consistency.HeaderStale), "%s: a refused request is labelled as a read", path)
		require.Zero(t, tr.Stats().Rejected, "%s: the request tried to wait for the token before it was refused", path)
	}

	// The control: a well-formed read does wait, so it is turned away.
	r := b.get(t, "/orders/o-001", h)
	r.problem(t, http.StatusNotFound, web.ProblemNotYetVisible)
	require.Equal(t, uint64(1), tr.Stats().Rejected)
	b.get(t, "/orders?customer=c-1", h)
	require.Equal(t, uint64(2), tr.Stats().Rejected)
}

// randomOrigin is a valid origin: http or https, a DNS name or an IPv4
// address, with or without a port other than the scheme's default.
func randomOrigin(rng *rand.Rand) string {
	scheme := []string{"http", "https"}[rng.IntN(2)]
	var host string
	switch rng.IntN(3) {
	case 0:
		host = fmt.Sprintf("shop-%d.example", rng.IntN(1000))
	case 1:
		host = fmt.Sprintf("app%d.site-%d.net", rng.IntN(10), rng.IntN(100))
	default:
		// 10/8: never the test server's own host, 127.0.0.1.
		host = fmt.Sprintf("10.%d.%d.%d", rng.IntN(256), rng.IntN(256), 1+rng.IntN(254))
	}
	if rng.IntN(2) == 0 {
		host += fmt.Sprintf(":%d", 1024+rng.IntN(60000))
	}
	return scheme + "://" + host
}

// TestNew_RefusesAllowedOriginsThatAreNotOrigins: an entry of
// AllowedOrigins is an origin as a browser sends it, or "*"; anything
// else, which CORS could never match but a host-pattern reading might, is
// refused by New with an error naming the entry and the valid form.
func TestNew_RefusesAllowedOriginsThatAreNotOrigins(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	tr, err := consistency.NewTracker(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Stop(context.Background()) })
	build := func(origins ...string) error {
		s, err := web.New(&web.Config{Orders: newFakeOrders(tr), Tracker: tr, ReadModels: []string{readModel}, AllowedOrigins: origins, Logger: discardLogger()})
		if err == nil {
			s.Close()
		}
		return err
	}

	bad := []string{
		"shop.example", "*.example.com", "localhost:8080", "//shop.example", "https:shop.example", "https://",
		"https://shop.example/", "https://shop.example/app", "https://shop.example?x=1", "https://shop.example?",
		"https://shop.example#top", "https://user@shop.example", "https://user:pw@shop.example",
		"ftp://shop.example", "ws://shop.example", "HTTPS://shop.example", "https://Shop.Example",
		"https://*.example.com", "https://shop.example:443", "http://shop.example:80", "https://shop.example:",
		"https://shop.example:0", "https://shop.example:99999", "https://shop_example.com", "https://sh op.example", "https://.shop.example", "https://shop..example",
		"http://[::ffff:1.2.3.4]", "http://[0:0::1]", "http://[fe80::1%25eth0]", " https://shop.example",
	}
	// Random valid origins, each spoilt in one of the ways a list is
	// commonly written wrong.
	spoil := []func(string) string{
		func(o string) string { return o + "/" },
		func(o string) string { return o + "/path" },
		func(o string) string { return o + "?q=1" },
		func(o string) string { return strings.ToUpper(o) },
		func(o string) string { return strings.SplitN(o, "://", 2)[1] },
		func(o string) string { return strings.Replace(o, "://", "://user@", 1) },
		func(o string) string { return strings.Replace(o, "://", "://*.", 1) },
		func(o string) string { return "wss" + o[strings.Index(o, "://"):] },
	}
	for range 30 {
		bad = append(bad, spoil[rng.IntN(len(spoil))](randomOrigin(rng)))
	}
	for _, o := range bad {
		// After a valid entry, so the error must name the right index.
		err := build("https://ok.example", o)
		require.Error(t, err, "%q was taken as an allowed origin", o)
		require.ErrorContains(t, err, fmt.Sprintf("Config.AllowedOrigins[1] is %q", o))
		require.ErrorContains(t, err, "scheme://host[:port]", "the error says what an entry looks like")
	}
	require.ErrorContains(t, build("shop.example"), `(write "https://shop.example")`)

	good := []string{"*", "https://shop.example", "http://localhost:8080", "http://127.0.0.1:3000", "http://[::1]:8080", "https://xn--bcher-kva.example"}
	for range 30 {
		good = append(good, randomOrigin(rng))
	}
	require.NoError(t, build(good...))
}

// TestAuditAllowedOriginMeansOneThingForCORSAndWebSocket: for any Origin,
// the CORS preflight and the live WebSocket handshake agree, and both take
// exactly the listed origins: not another scheme or port of one, nor one
// in another case (which a host-pattern reading would take).
func TestAuditAllowedOriginMeansOneThingForCORSAndWebSocket(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	var listed []string
	for range 3 {
		listed = append(listed, randomOrigin(rng))
	}
	b := setup(t, func(c *web.Config) { c.AllowedOrigins = listed })

	var tried []string
	for _, o := range listed {
		scheme, host, _ := strings.Cut(o, "://")
		other := map[string]string{"http": "https", "https": "http"}[scheme]
		hostOnly, _, hasPort := strings.Cut(host, ":")
		tried = append(tried, o, other+"://"+host, strings.ToUpper(o), scheme+"://"+strings.ToUpper(host), o+"/", hostOnly)
		if hasPort {
			tried = append(tried, scheme+"://"+hostOnly, scheme+"://"+hostOnly+":1")
		} else {
			tried = append(tried, o+":8443")
		}
	}
	for range 5 {
		tried = append(tried, randomOrigin(rng))
	}
	tried = append(tried, "null", "https://evil.example")

	for _, origin := range tried {
		want := slices.Contains(listed, origin)
		pre := b.do(t, http.MethodOptions, "/orders", http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}}, nil)
		cors := pre.status == http.StatusNoContent
		if !cors {
			pre.problem(t, http.StatusForbidden, web.ProblemForbiddenOrigin)
		}
		status := dialLive(t, b, origin)
		ws := status == http.StatusSwitchingProtocols
		if !ws {
			require.Equal(t, http.StatusForbidden, status, origin)
		}
		require.Equal(t, cors, ws, "Origin %q: CORS preflight %d, WebSocket %d (allowed %q)", origin, pre.status, status, listed)
		require.Equal(t, want, cors, "Origin %q (allowed %q)", origin, listed)
	}
	// The page's own origin needs no entry.
	require.Equal(t, http.StatusSwitchingProtocols, dialLive(t, b, b.url))

	// "*" too means one thing, even for an Origin that is no URL, which
	// the live hub refuses whatever it is told.
	anyOrigin := setup(t, func(c *web.Config) { c.AllowedOrigins = []string{"*"} })
	for _, origin := range []string{"http://[::1", "%zz", "null", "HTTPS://SHOP.EXAMPLE", randomOrigin(rng)} {
		pre := anyOrigin.do(t, http.MethodOptions, "/orders", http.Header{"Origin": {origin}, "Access-Control-Request-Method": {"POST"}}, nil)
		status := dialLive(t, anyOrigin, origin)
		require.Equal(t, pre.status == http.StatusNoContent, status == http.StatusSwitchingProtocols,
			"Origin %q under \"*\": CORS preflight %d, WebSocket %d", origin, pre.status, status)
	}
}

// dialLive opens the live WebSocket from a page of origin and returns the
// handshake's status.
func dialLive(t *testing.T, b *bundle, origin string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.url, "http")+web.PathLive+"?entity=o-001", &websocket.DialOptions{
		HTTPClient: b.client, HTTPHeader: http.Header{"Origin": {origin}},
	})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close()
	}
	if err == nil {
		_ = conn.CloseNow()
	}
	require.NotNil(t, resp, "dial error %v", err)
	return resp.StatusCode
}

// TestAuditSagaStatusIsValidated: GET /api/sagas?status= takes the
// engine's statuses; another is a 400 naming them, not an empty list
// that would read as "none in that status".
func TestAuditSagaStatusIsValidated(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.ops.sagas = someSagas()
	statuses := []string{"running", "parked", "compensating", "completed", "failed", "cancelled"}
	for _, bogus := range []string{"bogus", "Failed", "fail", "failed%20", "compensated", strings.Repeat("x", 500)} {
		p := b.get(t, "/api/sagas?status="+bogus, nil).problem(t, http.StatusBadRequest, web.ProblemInvalidParameter)
		require.Equal(t, "status", p["parameter"])
		for _, s := range statuses {
			require.Contains(t, p["detail"], s, "the problem names the valid statuses")
		}
	}
	for _, s := range statuses {
		r := b.get(t, "/api/sagas?status="+s, nil)
		require.Equal(t, http.StatusOK, r.status, "%s: %s", s, r.body)
	}
	sagas := as[[]any](t, b.get(t, "/api/sagas?status=failed", nil).json(t)["sagas"])
	require.Len(t, sagas, 1)
	// A repeated parameter is refused, not read for its first value.
	for _, q := range []string{"status=failed&status=running", "stuck=true&stuck=false", "limit=1&limit=2"} {
		p := b.get(t, "/api/sagas?"+q, nil).problem(t, http.StatusBadRequest, web.ProblemInvalidParameter)
		require.Equal(t, q[:strings.IndexByte(q, '=')], p["parameter"], q)
	}
}

// TestAuditSagaActionReadsItsBody: retry and cancel read their body as
// every POST does: capped (413), one JSON object without unknown fields
// (400), refused before the engine acts. An empty body or {}, what the
// dashboard sends, is taken when sent as application/json, and refused
// (415) without that type.
func TestAuditSagaActionReadsItsBody(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.ops.sagas = someSagas()
	for _, action := range []string{"retry", "cancel"} {
		path := "/api/sagas/failed-1/" + action
		for _, body := range []string{`not json {`, `{"force":true}`, `[]`, `null`, `"{}"`, `{}{}`, `{} x`, `{"":1}`} {
			b.do(t, http.MethodPost, path, jsonHeader(), strings.NewReader(body)).problem(t, http.StatusBadRequest, web.ProblemInvalidBody)
		}
		b.do(t, http.MethodPost, path, jsonHeader(), strings.NewReader(`{"pad":"`+strings.Repeat("x", 1<<20)+`"}`)).
			problem(t, http.StatusRequestEntityTooLarge, web.ProblemBodyTooLarge)
		require.Empty(t, b.ops.actions, "%s acted on a body it refused", action)
	}

	for _, body := range []string{`{}`, ``, " \n", `{ }`} {
		r := b.do(t, http.MethodPost, "/api/sagas/failed-1/retry", jsonHeader(), strings.NewReader(body))
		require.Equal(t, http.StatusAccepted, r.status, "body %q: %s", body, r.body)
	}
	r := b.do(t, http.MethodPost, "/api/sagas/stuck-1/cancel", jsonHeader(), nil)
	require.Equal(t, http.StatusAccepted, r.status, "no body at all: %s", r.body)
	// Without the JSON type, as another site's page could send it without
	// asking first: refused, whatever the body.
	for _, action := range []string{"retry", "cancel"} {
		b.do(t, http.MethodPost, "/api/sagas/stuck-1/"+action, nil, http.NoBody).
			problem(t, http.StatusUnsupportedMediaType, web.ProblemUnsupportedMediaType)
	}
	require.Equal(t, []string{"retry failed-1", "retry failed-1", "retry failed-1", "retry failed-1", "cancel stuck-1"}, b.ops.actions)
}

// TestAuditProblemsEchoBoundedInput: no problem answer reflects a long
// input in full, whichever part of the request carries it.
func TestAuditProblemsEchoBoundedInput(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *web.Config) { c.AllowedOrigins = []string{"https://shop.example"} })
	long := strings.Repeat("x", 6000)
	const most = 1 << 10 // a problem's own text, with 128 bytes of echo

	cases := []struct {
		method, path string
		header       http.Header
		body         string
		status       int
	}{
		{http.MethodDelete, "/orders/" + long, nil, "", http.StatusMethodNotAllowed},
		{strings.Repeat("X", 6000), "/orders/o-1", nil, "", http.StatusMethodNotAllowed},
		{http.MethodGet, "/api/sagas/" + long, nil, "", http.StatusNotFound},
		{http.MethodPost, "/api/sagas/" + long + "/retry", jsonHeader(), "{}", http.StatusNotFound},
		{http.MethodPost, "/api/sagas/" + long + "/cancel", jsonHeader(), "{}", http.StatusNotFound},
		{http.MethodGet, "/" + long, nil, "", http.StatusNotFound},
		{http.MethodGet, "/orders/" + long, nil, "", http.StatusBadRequest},
		{http.MethodGet, "/orders?customer=" + long, nil, "", http.StatusBadRequest},
		{http.MethodGet, "/orders?customer=c-1&limit=" + long, nil, "", http.StatusBadRequest},
		{http.MethodGet, "/orders?customer=c-1&customer=" + long, nil, "", http.StatusBadRequest},
		{http.MethodGet, "/orders/o-1", http.Header{consistency.HeaderPosition: {long}}, "", http.StatusBadRequest},
		{http.MethodGet, "/orders/o-1?" + consistency.QueryParam + "=" + long, nil, "", http.StatusBadRequest},
		{http.MethodGet, "/orders/o-1", http.Header{consistency.HeaderTimeout: {long}}, "", http.StatusBadRequest},
		{http.MethodGet, "/api/sagas?status=" + long, nil, "", http.StatusBadRequest},
		{http.MethodGet, "/api/sagas?limit=" + long, nil, "", http.StatusBadRequest},
		{http.MethodPost, "/orders", jsonHeader(), `{"` + long + `":1}`, http.StatusBadRequest},
		{http.MethodPost, "/orders", jsonHeader(), `{"qty":1` + strings.Repeat("0", 6000) + `}`, http.StatusBadRequest},
		{http.MethodPost, "/orders", jsonHeader(), `{"customer_id":"` + long + `","sku":"tea","qty":1,"card":"4242-4242-4242-4242"}`, http.StatusUnprocessableEntity},
		{http.MethodPost, "/api/sagas/failed-1/retry", jsonHeader(), `{"` + long + `":1}`, http.StatusBadRequest},
		{http.MethodOptions, "/orders", http.Header{"Origin": {"https://" + long}, "Access-Control-Request-Method": {"POST"}}, "", http.StatusForbidden},
		{http.MethodGet, web.PathLive, http.Header{"Origin": {"https://" + long}}, "", http.StatusForbidden},
	}
	for _, tc := range cases {
		r := b.do(t, tc.method, tc.path, tc.header, strings.NewReader(tc.body))
		name := fmt.Sprintf("%.20s %.40s", tc.method, tc.path)
		require.Equal(t, tc.status, r.status, "%s: %s", name, r.body)
		require.Equal(t, consistency.ContentTypeProblem, r.header.Get("Content-Type"), name)
		require.Less(t, len(r.body), most, "%s echoed its input: %.300s", name, r.body)
	}
}
