package live_test

import (
	"context"
	"encoding/json"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// chromiumPath is where Debian's chromium package puts the browser.
// ./scripts/test installs it when it is missing.
const chromiumPath = "/usr/bin/chromium"

// browserTimeout bounds the whole browser test, start-up included.
const browserTimeout = 20 * time.Second

// newBrowser starts a headless Chromium with a throw-away profile and
// returns a tab context, stopped (and the browser waited for) at cleanup.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("the browser test needs Chromium at %s (%v): run ./scripts/test, which installs chromium and chromium-driver, "+
			"or apt-get install chromium chromium-driver", chromiumPath, err)
	}
	profile := t.TempDir() // registered first, so removed after the browser exits

	ctx, cancel := context.WithTimeout(context.Background(), browserTimeout)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chromiumPath),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(profile),
	)
	tabCtx, cancelTab := chromedp.NewContext(allocCtx, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() {
		cancelTab()
		cancelAlloc() // kills the browser and waits for it
		cancel()
	})
	return tabCtx
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
}

// jsString quotes s as a JavaScript string literal.
func jsString(t *testing.T, s string) string {
	t.Helper()
	b, err := json.Marshal(s)
	require.NoError(t, err)
	return string(b)
}
