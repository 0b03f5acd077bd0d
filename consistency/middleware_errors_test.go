package consistency_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events/memstore"
)

// TestMiddleware_FailedWaitIsAProblemNotAnEmpty200: a wait that fails
// while the client is still there is answered with a problem body, not
// with an empty 200 that carries no consistency headers: 500 for a wait
// inside a unit of work (a unit-per-request middleware mounted outside
// this one).
func TestMiddleware_FailedWaitIsAProblemNotAnEmpty200(t *testing.T) {
	t.Parallel()
	serve := func(tr *consistency.Tracker, req *http.Request) *httptest.ResponseRecorder {
		h := consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"orders"}})(
			http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("the handler ran after a failed wait") }))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	t.Run("in a unit", func(t *testing.T) {
		t.Parallel()
		st, err := memstore.New(nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		u, err := st.Checkpoints().Begin(t.Context())
		require.NoError(t, err)
		t.Cleanup(func() { _ = u.Rollback(context.Background()) })
		tr := setup(t, nil)
		tr.Advance("orders", tok(5))
		req := httptest.NewRequest(http.MethodGet, "/orders", nil)
		req.Header.Set(consistency.HeaderPosition, tok(1).String())
		rec := serve(tr, req.WithContext(u.Context(req.Context())))
		require.Equal(t, http.StatusInternalServerError, rec.Code)
		require.Equal(t, consistency.ContentTypeProblem, rec.Header().Get("Content-Type"))
		require.Contains(t, rec.Body.String(), "unit of work")
	})
}

// TestMiddleware_ProblemDoesNotReflectAHugeQueryKey: a bad %-escape in
// the consistency parameter's name is refused with a 400 that does not
// echo the client's key back whole, however long it is.
func TestMiddleware_ProblemDoesNotReflectAHugeQueryKey(t *testing.T) {
	t.Parallel()
	tr := setup(t, nil)
	h := consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"orders"}})(
		http.HandlerFunc(func(http.ResponseWriter, *http.Request) { t.Error("the handler ran") }))
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	for range 20 {
		junk := strings.Repeat("A", 1+r.IntN(64<<10))
		req := httptest.NewRequest(http.MethodGet, "/orders?consistency_position%zz"+junk+"=x", nil)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		require.Equal(t, http.StatusBadRequest, rec.Code)
		require.Less(t, rec.Body.Len(), 2<<10, "seed %d: the 400 reflects a %d-byte query key back", seed, len(junk))
	}
}
