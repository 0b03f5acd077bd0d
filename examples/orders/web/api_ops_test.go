package web_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders/web"
	"github.com/converge-es/converge/internal/clocktest"
)

// someSagas are a stuck, a failed, a running and a completed instance.
func someSagas() []web.SagaDetail {
	at := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	return []web.SagaDetail{
		{
			SagaSummary: web.SagaSummary{
				ID: "stuck-1", Type: "order_fulfilment", Status: "running", Step: "charge_payment", Stuck: true,
				Error: "waiting for order_summary to reach v1.x", StartedAt: at, UpdatedAt: at.Add(time.Minute),
			},
			Timeline: []web.TimelineEntry{{At: at, Kind: "event", Step: "reserve_stock", Detail: "OrderPlaced"}, {At: at.Add(time.Second), Kind: "command", Step: "charge_payment", Detail: "ChargePayment"}},
		},
		{
			SagaSummary: web.SagaSummary{
				ID: "failed-1", Type: "order_fulfilment", Status: "failed", Step: "release_stock",
				Error: "inventory service refused: 500", StartedAt: at, UpdatedAt: at.Add(2 * time.Minute),
			},
			Timeline: []web.TimelineEntry{{At: at, Kind: "event", Detail: "OrderPlaced"}, {At: at.Add(time.Minute), Kind: "compensation", Step: "release_stock", Detail: "ReleaseStock failed"}},
		},
		{SagaSummary: web.SagaSummary{ID: "run-1", Type: "order_fulfilment", Status: "running", StartedAt: at, UpdatedAt: at}},
		{SagaSummary: web.SagaSummary{ID: "done-1", Type: "order_fulfilment", Status: "completed", StartedAt: at, UpdatedAt: at}},
	}
}

func TestOpsAPI(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.ops.sagas = someSagas()
	b.ops.dls = []web.DeadLetter{{
		ID: "order_summary/1", Consumer: "order_summary", EventID: "e-1", EventType: "orders.order_placed",
		StreamID: "order-1", Position: events.MakeToken(1, 7), Reason: "boom", Attempts: 5,
	}}

	r := b.get(t, "/api/sagas?stuck=true", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.JSONEq(t, `{"running":2,"failed":1,"completed":1}`, mustJSON(t, r.json(t)["counts"]))
	sagas := as[[]any](t, r.json(t)["sagas"])
	require.Len(t, sagas, 1)
	require.Equal(t, "stuck-1", as[map[string]any](t, sagas[0])["id"])

	r = b.get(t, "/api/sagas?status=failed", nil)
	require.Equal(t, "failed-1", as[map[string]any](t, as[[]any](t, r.json(t)["sagas"])[0])["id"])

	r = b.get(t, "/api/sagas/failed-1", nil)
	require.Equal(t, http.StatusOK, r.status)
	require.Len(t, r.json(t)["timeline"], 2)
	b.get(t, "/api/sagas/nosuch", nil).problem(t, 404, web.ProblemNotFound)
	b.get(t, "/api/sagas?stuck=maybe", nil).problem(t, 400, web.ProblemInvalidParameter)
	b.get(t, "/api/sagas?limit=0", nil).problem(t, 400, web.ProblemInvalidParameter)

	r = b.do(t, http.MethodPost, "/api/sagas/failed-1/retry", jsonHeader(), strings.NewReader(`{}`))
	require.Equal(t, http.StatusAccepted, r.status, "body %s", r.body)
	r = b.do(t, http.MethodPost, "/api/sagas/stuck-1/cancel", jsonHeader(), strings.NewReader(`{}`))
	require.Equal(t, http.StatusAccepted, r.status)
	require.Equal(t, []string{"retry failed-1", "cancel stuck-1"}, b.ops.actions)
	// A plain form post cannot act: a cross-site form must not retry or
	// cancel anything.
	b.do(t, http.MethodPost, "/api/sagas/failed-1/retry", http.Header{"Content-Type": {"text/plain"}}, strings.NewReader(`{}`)).
		problem(t, 415, web.ProblemUnsupportedMediaType)
	b.do(t, http.MethodPost, "/api/sagas/nosuch/retry", jsonHeader(), strings.NewReader(`{}`)).problem(t, 404, web.ProblemNotFound)
	b.do(t, http.MethodPost, "/api/sagas/done-1/retry", jsonHeader(), strings.NewReader(`{}`)).problem(t, 409, web.ProblemConflict)
	require.Len(t, b.ops.actions, 2)

	r = b.get(t, "/api/dead-letters", nil)
	require.Equal(t, http.StatusOK, r.status)
	dl := as[map[string]any](t, as[[]any](t, r.json(t)["dead_letters"])[0])
	require.Equal(t, "boom", dl["reason"])
	require.Equal(t, events.MakeToken(1, 7).String(), dl["position"])
}

func TestOpsAPI_NoOpsIsEmpty(t *testing.T) {
	t.Parallel()
	b := setup(t, func(c *web.Config) { c.Ops = nil })
	r := b.get(t, "/api/sagas", nil)
	require.JSONEq(t, `{"counts":{},"sagas":[]}`, string(r.body))
	require.JSONEq(t, `{"dead_letters":[]}`, string(b.get(t, "/api/dead-letters", nil).body))
	b.do(t, http.MethodPost, "/api/sagas/x/retry", jsonHeader(), strings.NewReader(`{}`)).problem(t, 404, web.ProblemNotFound)
}

func TestPages_AreServedWithAStrictPolicy(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, path := range []string{"/", "/dashboard", "/assets/app.js", "/assets/dashboard.js", "/assets/common.js", "/assets/style.css"} {
		r := b.get(t, path, nil)
		require.Equal(t, http.StatusOK, r.status, path)
		require.Contains(t, r.header.Get("Content-Security-Policy"), "script-src 'self'", path)
		require.Equal(t, "nosniff", r.header.Get("X-Content-Type-Options"), path)
	}
	require.Contains(t, b.get(t, "/", nil).header.Get("Content-Type"), "text/html")
	require.Equal(t, http.StatusNotFound, b.get(t, "/assets/", nil).status, "no directory listing")
	b.get(t, "/nosuch", nil).problem(t, http.StatusNotFound, web.ProblemNotFound)
	r := b.do(t, http.MethodDelete, "/orders/o-1", nil, nil)
	r.problem(t, http.StatusMethodNotAllowed, "about:blank")
	require.Equal(t, "GET, HEAD", r.header.Get("Allow"))
}

// TestLagAndReadModelRoutes: GET /api/lag answers the Config.Lag history
// as of Config.Clock's now, and GET /read-models the catalog, served only
// when Config.Catalog is set.
func TestLagAndReadModelRoutes(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	h := newLagHistory(t, nil)
	h.Record([]lag.Report{{Name: "order_summary", SLA: 2 * time.Second, TimeLag: 3 * time.Second, PositionLag: 4, Breached: true, Reason: lag.ReasonTimeLag, At: now.Add(-time.Second)}})
	catalog := &consistency.Catalog{}
	catalog.Register(consistency.ReadModel{Name: "order_summary", Class: consistency.Eventual, SLA: 2 * time.Second})
	b := setup(t, func(c *web.Config) {
		c.Lag, c.Catalog, c.Clock = h, catalog, clocktest.New(now)
	})

	r := b.get(t, "/api/lag", nil)
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	require.JSONEq(t, mustJSON(t, h.Snapshot(now)), string(r.body))
	require.Contains(t, string(r.body), `"sla_ms":2000`)

	r = b.get(t, "/read-models", nil)
	require.Equal(t, http.StatusOK, r.status, "body %s", r.body)
	models := as[[]any](t, r.json(t)["read_models"])
	require.Len(t, models, 1)
	require.Equal(t, "order_summary", as[map[string]any](t, models[0])["name"])

	setup(t, nil).get(t, "/read-models", nil).problem(t, http.StatusNotFound, web.ProblemNotFound)
}
