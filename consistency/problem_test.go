package consistency_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

func TestWriteProblem(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	consistency.WriteProblem(rec, http.StatusConflict, "Order already shipped", "cancel it with a return instead")

	require.Equal(t, http.StatusConflict, rec.Code)
	require.Equal(t, consistency.ContentTypeProblem, rec.Header().Get("Content-Type"))
	require.JSONEq(t, `{"type":"about:blank","title":"Order already shipped","status":409,"detail":"cancel it with a return instead"}`, rec.Body.String())
}

func TestWriteProblemDetails(t *testing.T) {
	t.Parallel()
	rec := httptest.NewRecorder()
	consistency.WriteProblemDetails(rec, &consistency.Problem{Status: http.StatusBadRequest, Value: strings.Repeat("x", 10_000)})

	var p map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &p))
	require.Equal(t, "Bad Request", p["title"], "the title defaults to the status text")
	value, ok := p["value"].(string)
	require.True(t, ok)
	require.Less(t, len(value), 200, "the echoed value is truncated")
}
