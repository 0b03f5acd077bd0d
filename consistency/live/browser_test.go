package live_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/internal/browsertest"
)

// browserTimeout bounds the whole browser test, start-up included. Chromium
// starting beside a full race-detector run on two cores has taken over 20 s.
const browserTimeout = 60 * time.Second

// newBrowser starts a headless Chromium for one test (browsertest.New).
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	return browsertest.New(t, browserTimeout)
}

// textOf returns the text content of the element with id.
func textOf(t *testing.T, ctx context.Context, id string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.ID(id)))
	require.NoError(t, err)
	return s
}

func TestPage_InBrowser(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, nil)
	ctx := newBrowser(t)

	require.NoError(t, chromedp.Do(ctx,
		chromedp.Navigate(b.pageURL+"?entity=order-1"),
		chromedp.WaitVisible(chromedp.ID("status")),
	))
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`document.getElementById("status").textContent === "connected"`,
		chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err, "#status never said connected; it says %q", textOf(t, ctx, "status"))
	require.Equal(t, "order-1", textOf(t, ctx, "entity"))
	require.Contains(t, textOf(t, ctx, "data"), "pending", "no row yet: the page says so")

	// The second row carries markup, which the page must show as text.
	const xss = `<img src=x onerror="window.pwned=1"><script>window.pwned=2</script><b id="injected">bold</b>`
	second, err := json.Marshal(map[string]any{"status": "paid", "note": xss})
	require.NoError(t, err)
	hub.Publish("order-1", json.RawMessage(`{"status":"placed"}`), tok(1))
	hub.Publish("order-1", second, tok(2))

	_, err = chromedp.Run(ctx, chromedp.Poll[bool](
		`document.getElementById("position").textContent === `+jsString(t, tok(2).String()),
		chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err, "#position never showed the second token; it shows %q", textOf(t, ctx, "position"))

	// Nothing of the markup became elements or ran.
	injected, err := chromedp.Run(ctx, chromedp.Evaluate[int](
		`document.querySelectorAll("#data *, #log li *, img, b, #injected").length + document.scripts.length - 1`))
	require.NoError(t, err)
	require.Zero(t, injected, "markup from the data was rendered as HTML")
	pwned, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.pwned !== undefined`))
	require.NoError(t, err)
	require.False(t, pwned, "script from the data ran")

	var shown map[string]any
	require.NoError(t, json.Unmarshal([]byte(textOf(t, ctx, "data")), &shown))
	require.Equal(t, map[string]any{"status": "paid", "note": xss}, shown)

	logged, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#log li"), li => li.textContent)`))
	require.NoError(t, err)
	require.Len(t, logged, 2)
	require.Contains(t, logged[0], tok(2).String(), "newest first")
	require.Contains(t, logged[1], tok(1).String())

	// Publish's promise "Invalid data is logged and not sent", for data
	// that is not UTF-8: sent in a text message, it would make the browser
	// fail the connection, and the page would miss the update published
	// right after it (there is no Snapshot to catch up with on reconnect).
	hub.Publish("order-1", json.RawMessage("{\"name\":\"caf\xe9\"}"), tok(3))
	hub.Publish("order-1", json.RawMessage(`{"status":"shipped"}`), tok(4))
	waitText(t, ctx, "position", tok(4).String())
	require.Equal(t, "connected", textOf(t, ctx, "status"))
	logged, err = chromedp.Run(ctx, chromedp.Evaluate[[]string](
		`Array.from(document.querySelectorAll("#log li"), li => li.textContent)`))
	require.NoError(t, err)
	require.Len(t, logged, 3, "the update that is not UTF-8 was not shown")

	// PageHandler's promise that the page's CSP allows its connection to
	// wsPath on another origin, whatever form wsPath takes: page.js
	// connects with ws: for http: and for the http page's own scheme, which
	// the CSP must name (an http: source or a bare host does not allow it).
	// These share the browser: each new one costs seconds.
	other, ob := setup(t, &live.Config{AllowedOrigins: []string{"127.0.0.1:*"}})
	wsHost := strings.TrimPrefix(ob.server.URL, "http://")
	for i, wsPath := range []string{
		"ws://" + wsHost + "/live",   // the control: allowed before the fix too
		"//" + wsHost + "/live",      // scheme-relative
		"http://" + wsHost + "/live", // turned into ws: by page.js
	} {
		page := httptest.NewServer(live.PageHandler(wsPath))
		t.Cleanup(page.Close)
		entity := "order-" + strconv.Itoa(10+i)
		require.NoError(t, chromedp.Do(ctx,
			chromedp.Navigate(page.URL+"?entity="+entity),
			chromedp.WaitVisible(chromedp.ID("status")),
		), wsPath)
		_, err := chromedp.Run(ctx, chromedp.Poll[bool](
			`document.getElementById("status").textContent === "connected"`,
			chromedp.WithPollingTimeout(10*time.Second)))
		require.NoError(t, err, "wsPath %s: #status never said connected; it says %q", wsPath, textOf(t, ctx, "status"))
		other.Publish(entity, json.RawMessage(row(i+1)), tok(i+1))
		waitText(t, ctx, "position", tok(i+1).String())
	}
}

// waitText waits until the element with id shows text.
func waitText(t *testing.T, ctx context.Context, id, text string) {
	t.Helper()
	_, err := chromedp.Run(ctx, chromedp.Poll[bool](
		`document.getElementById(`+jsString(t, id)+`).textContent === `+jsString(t, text),
		chromedp.WithPollingTimeout(10*time.Second)))
	require.NoError(t, err, "#%s never showed %q; it shows %q", id, text, textOf(t, ctx, id))
}

// jsString quotes s as a JavaScript string literal.
func jsString(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	require.NoError(t, err)
	return string(b)
}
