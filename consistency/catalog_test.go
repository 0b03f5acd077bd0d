package consistency_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

func newCatalog(t *testing.T) *consistency.Catalog {
	t.Helper()
	var c consistency.Catalog
	c.Register(consistency.ReadModel{Name: "order_summary", Class: consistency.Eventual, SLA: 2 * time.Second, Description: "Orders with totals | status"})
	c.Register(consistency.ReadModel{Name: "customer_balance", Class: consistency.Strong, Description: "Balance, updated with the events"})
	c.Register(consistency.ReadModel{Name: "sales_report", Class: consistency.Eventual, SLA: 30 * time.Second, Description: "Daily sales\nfor analytics"})
	return &c
}

func TestCatalog_Register(t *testing.T) {
	t.Parallel()
	c := newCatalog(t)

	for want, m := range map[string]consistency.ReadModel{
		"Name is empty":     {Class: consistency.Strong},
		"want consistency.": {Name: "x", Class: "sometimes"},
		"has no SLA":        {Name: "x", Class: consistency.Eventual},
		"is Strong but":     {Name: "x", Class: consistency.Strong, SLA: time.Second},
		"declared twice":    {Name: "order_summary", Class: consistency.Strong},
	} {
		require.ErrorContains(t, c.RegisterSafely(m), want)
	}
	require.Panics(t, func() { c.Register(consistency.ReadModel{}) })
	require.Len(t, c.ReadModels(), 3)
}

func TestCatalog_MarkdownTable(t *testing.T) {
	t.Parallel()
	require.Equal(t, "| Read model | Consistency | SLA | Description |\n"+
		"|---|---|---|---|\n"+
		"| `customer_balance` | strong | — | Balance, updated with the events |\n"+
		"| `order_summary` | eventual | 2s | Orders with totals \\| status |\n"+
		"| `sales_report` | eventual | 30s | Daily sales for analytics |\n",
		newCatalog(t).MarkdownTable())
}

func TestCatalog_Handler(t *testing.T) {
	t.Parallel()
	tr := setup(t, nil)
	tr.Advance("order_summary", tok(5))
	srv := httptest.NewServer(newCatalog(t).Handler(tr))
	t.Cleanup(srv.Close)

	resp, err := srv.Client().Get(srv.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "application/json", resp.Header.Get("Content-Type"))

	type entry struct {
		Name        string  `json:"name"`
		Class       string  `json:"class"`
		Description string  `json:"description"`
		SLA         string  `json:"sla"`
		SLAMillis   int64   `json:"sla_ms"`
		Checkpoint  *string `json:"checkpoint"`
	}
	body := decode[struct {
		ReadModels []entry `json:"read_models"`
	}](t, resp)
	require.Len(t, body.ReadModels, 3)

	balance, orders, sales := body.ReadModels[0], body.ReadModels[1], body.ReadModels[2]
	require.Equal(t, entry{Name: "customer_balance", Class: "strong", Description: "Balance, updated with the events"}, balance)

	require.Equal(t, "order_summary", orders.Name)
	require.Equal(t, "eventual", orders.Class)
	require.Equal(t, "2s", orders.SLA)
	require.Equal(t, int64(2000), orders.SLAMillis)
	require.NotNil(t, orders.Checkpoint)
	require.Equal(t, tok(5).String(), *orders.Checkpoint)

	require.Equal(t, "sales_report", sales.Name)
	require.Nil(t, sales.Checkpoint, "no checkpoint known yet")

	post, err := srv.Client().Post(srv.URL, "application/json", nil)
	require.NoError(t, err)
	defer post.Body.Close()
	require.Equal(t, http.StatusMethodNotAllowed, post.StatusCode)
	require.Equal(t, consistency.ContentTypeProblem, post.Header.Get("Content-Type"))
	require.Equal(t, "GET, HEAD", post.Header.Get("Allow"))
}

func TestCatalog_HandlerWithoutTracker(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	newCatalog(t).Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	require.NotContains(t, rec.Body.String(), "checkpoint")

	var empty consistency.Catalog
	rec = httptest.NewRecorder()
	empty.Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	require.JSONEq(t, `{"read_models": []}`, rec.Body.String())
}
