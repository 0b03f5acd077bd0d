package web_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/examples/orders/web"
)

// TestErrorsAreProblemDetails: what the package doc promises of errors
// holds for the assets and the live endpoint too, not only the JSON API:
// a missing asset, a directory, a bad live subscription and a plain GET of
// the WebSocket are all application/problem+json.
func TestErrorsAreProblemDetails(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	for _, path := range []string{"/assets/", "/assets/nosuch.js", "/assets/app.js/x"} {
		p := b.get(t, path, nil).problem(t, http.StatusNotFound, web.ProblemNotFound)
		require.Contains(t, p["detail"], path, path)
	}
	require.Equal(t, http.StatusOK, b.get(t, "/assets/app.js", nil).status, "assets that are there are still served")

	p := b.get(t, web.PathLive+"?entity=", nil).problem(t, http.StatusBadRequest, "about:blank")
	require.Contains(t, p["detail"], "entity is empty")
	require.Equal(t, "entity", p["parameter"])
	p = b.get(t, web.PathLive+"?entity=order-1", nil).problem(t, http.StatusUpgradeRequired, "about:blank")
	require.Contains(t, p["detail"], "connect with a WebSocket client")
}
