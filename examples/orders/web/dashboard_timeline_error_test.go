package web_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/examples/orders/web"
)

// detailFailingOps fails every read of one saga's detail (its timeline)
// while failing is set; the lists still answer.
type detailFailingOps struct {
	*fakeOps
	id      string
	failing atomic.Bool
}

func (o *detailFailingOps) Saga(ctx context.Context, id string) (web.SagaDetail, error) {
	if id == o.id && o.failing.Load() {
		return web.SagaDetail{}, errors.New("saga store timed out")
	}
	return o.fakeOps.Saga(ctx, id)
}

// TestDashboard_TimelineThatFailedToLoadSaysSo_InBrowser: the timeline of
// failed-1 cannot be read (GET /api/sagas/failed-1 answers 500). The
// dashboard does not say "No timeline recorded." for it, a statement
// about the saga, under "Updated <now>": its card says the timeline could
// not be loaded, and the status line that the update failed. Once the
// timeline can be read, it is shown and the update succeeds.
func TestDashboard_TimelineThatFailedToLoadSaysSo_InBrowser(t *testing.T) {
	t.Parallel()
	ops := &detailFailingOps{fakeOps: &fakeOps{sagas: someSagas()}, id: "failed-1"}
	ops.failing.Store(true)
	b := setup(t, func(c *web.Config) { c.Ops = ops })
	tab := newBrowser(t)
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(b.url+"/dashboard")))
	card := `document.querySelector('#failed article[data-saga-id="failed-1"]')`
	updated := `document.getElementById("updated").textContent`
	poll(t, tab, `!!`+card+` && `+updated+` !== "Loading…"`, `document.body.innerText`)

	timeline := eval[string](t, tab, card+`.querySelector("details").textContent`)
	require.NotContains(t, timeline, "No timeline recorded.")
	require.Contains(t, timeline, "timeline could not be loaded: ")
	require.Contains(t, timeline, "/api/sagas/failed-1")
	status := eval[string](t, tab, updated)
	require.Contains(t, status, "Update failed: ")
	require.Contains(t, status, "failed-1")
	require.True(t, eval[bool](t, tab, `!!document.querySelector('#stuck article[data-saga-id="stuck-1"] details li:not(.error)')`),
		"the other timelines are shown")

	ops.failing.Store(false)
	poll(t, tab, `Array.from(`+card+`.querySelectorAll("details li")).length === 2 && `+updated+`.startsWith("Updated")`,
		card+`.innerText + " | " + `+updated)
}
