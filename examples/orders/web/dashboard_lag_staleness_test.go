package web_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/examples/orders/web"
)

// TestLagHistory_SaysWhenTheVerdictWasSampled: every projection's series
// carries its latest sample's time, and how old that sample may get
// before it no longer describes the present: lag.OverdueAfter of the
// monitor's intervals (the shortest gap between samples; a failed pass
// leaves a longer one), at least web.MinLagStaleAfter.
func TestLagHistory_SaysWhenTheVerdictWasSampled(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	h := newLagHistory(t, nil)
	// slow_view is sampled every 10s, with a pass missing; fast_view every
	// second; once_view once.
	for _, at := range []time.Duration{0, 10 * time.Second, 30 * time.Second, 40 * time.Second} {
		h.Record([]lag.Report{{Name: "slow_view", SLA: time.Second, At: t0.Add(at)}})
	}
	for i := range 5 {
		h.Record([]lag.Report{{Name: "fast_view", SLA: time.Second, At: t0.Add(time.Duration(i) * time.Second)}})
	}
	h.Record([]lag.Report{{Name: "once_view", SLA: time.Second, At: t0}})

	s := h.Snapshot(t0.Add(time.Minute))
	require.Len(t, s.Projections, 3)
	slow, fast, once := s.Projections[0], s.Projections[1], s.Projections[2]
	require.Equal(t, t0.Add(40*time.Second).UnixMilli(), slow.SampledAt)
	require.EqualValues(t, lag.OverdueAfter*10_000, slow.StaleAfterMillis)
	require.Equal(t, t0.Add(4*time.Second).UnixMilli(), fast.SampledAt)
	require.Equal(t, web.MinLagStaleAfter.Milliseconds(), fast.StaleAfterMillis)
	require.Equal(t, t0.UnixMilli(), once.SampledAt)
	require.Equal(t, web.MinLagStaleAfter.Milliseconds(), once.StaleAfterMillis)
	require.Contains(t, mustJSON(t, s), `"sampled_at":`+itoa(int(t0.UnixMilli())))
}

// TestDashboard_LagFromAnOldSampleSaysWhenItWasMeasured_InBrowser: the lag
// monitor's last successful pass was ten minutes ago (its passes fail
// since, and leave that pass's reports). The dashboard does not caption
// its verdict ("0.0 s behind (0 events) · within SLA") as the current
// one under "Updated <now>": it says there has been no measurement since
// then. A projection sampled just now keeps its verdict.
func TestDashboard_LagFromAnOldSampleSaysWhenItWasMeasured_InBrowser(t *testing.T) {
	t.Parallel()
	h := newLagHistory(t, nil)
	h.Record([]lag.Report{{Name: "order_summary", SLA: 2 * time.Second, At: time.Now().Add(-10 * time.Minute)}})
	b := setup(t, func(c *web.Config) { c.Lag = h })
	tab := newBrowser(t)
	require.NoError(t, chromedp.Do(tab, chromedp.Navigate(b.url+"/dashboard")))
	poll(t, tab, `document.getElementById("updated").textContent.startsWith("Updated")`, `document.body.innerText`)

	fig := `document.querySelector('figure.lag[data-projection="order_summary"]')`
	caption := eval[string](t, tab, fig+`.querySelector("figcaption").textContent`)
	require.Equal(t, 0, eval[int](t, tab, fig+`.querySelector("polyline").getAttribute("points").length`), "no sample in the window")
	require.NotContains(t, caption, "within SLA", "a verdict ten minutes old is not the current one")
	require.NotContains(t, caption, "0.0 s behind")
	require.Contains(t, caption, "no measurement since ")
	require.Equal(t, "unknown", eval[string](t, tab, fig+`.dataset.breached`))
	require.Equal(t, "true", eval[string](t, tab, fig+`.dataset.stale`))

	// Measured again: the verdict is back.
	h.Record([]lag.Report{{Name: "order_summary", SLA: 2 * time.Second, At: time.Now()}})
	poll(t, tab, fig+`.querySelector(".verdict").textContent === "within SLA"`, fig+`.innerText`)
	require.Equal(t, "false", eval[string](t, tab, fig+`.dataset.breached`))
}
