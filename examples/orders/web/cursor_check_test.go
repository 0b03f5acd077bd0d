package web_test

import (
	"context"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/examples/orders/web"
)

var _ web.CursorChecker = (*web.App)(nil)

// randomCursor is a cursor a client might send: an order id as List hands
// them out, or one spoiled by a character no id holds, by a byte that is
// not UTF-8, or by its length.
func randomCursor(rng *rand.Rand) string {
	const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."
	b := make([]byte, 1+rng.IntN(40))
	for i := range b {
		b[i] = idChars[rng.IntN(len(idChars))]
	}
	id := string(b)
	switch rng.IntN(5) {
	case 0:
		return id
	case 1:
		bad := []string{"'", "\"", " ", ";", "%", "/", "\x00", "é", "--", "\\"}[rng.IntN(10)]
		i := rng.IntN(len(id) + 1)
		return id[:i] + bad + id[i:]
	case 2:
		return id + "\xff"
	case 3:
		return strings.Repeat(id, 1+web.MaxIDLen/len(id))
	default:
		return id
	}
}

// listCountingApp counts the reads that reach List.
type listCountingApp struct {
	*web.App
	lists atomic.Int64
}

func (c *listCountingApp) List(ctx context.Context, customer string, page web.PageQuery) ([]web.OrderView, string, error) {
	c.lists.Add(1)
	return c.App.List(ctx, customer, page)
}

// TestApp_ForgedCursorIsRefusedBeforeTheRead: the App's CheckCursor
// refuses exactly the cursors its List refuses, and the API asks it before
// the consistency wait, so a forged ?after= gets its 400 without reaching
// List (which runs only once the wait is over), over random cursors.
func TestApp_ForgedCursorIsRefusedBeforeTheRead(t *testing.T) {
	t.Parallel()
	ab := setupApp(t, nil)
	co := &listCountingApp{App: ab.app}
	srv, err := web.New(&web.Config{
		Orders: co, Tracker: ab.app.Tracker(), ReadModels: ab.app.ReadModels(), Ops: ab.app.Ops(),
		Catalog: ab.app.Catalog(), Logger: discardLogger(),
	})
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	ctx := context.Background()

	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	refused := 0
	for range 300 {
		cursor := randomCursor(rng)
		checkErr := ab.app.CheckCursor(cursor)
		_, _, listErr := ab.app.List(ctx, "c-1", web.PageQuery{Limit: 2, After: cursor})
		require.Equal(t, checkErr != nil, listErr != nil, "cursor %q: CheckCursor says %v, List %v", cursor, checkErr, listErr)
		if checkErr == nil {
			continue
		}
		refused++
		require.ErrorIs(t, checkErr, web.ErrInvalidCursor)
		require.ErrorIs(t, listErr, web.ErrInvalidCursor)

		if len(cursor) > 256 {
			continue // refused by the API's own length bound first
		}
		before := co.lists.Load()
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/orders?"+url.Values{"customer": {"c-1"}, "after": {cursor}}.Encode(), nil))
		require.Equal(t, http.StatusBadRequest, rec.Code, "cursor %q: body %s", cursor, rec.Body)
		require.Contains(t, rec.Body.String(), `"parameter":"after"`)
		require.Equal(t, before, co.lists.Load(), "cursor %q reached List, after the wait", cursor)
	}
	require.Positive(t, refused, "no forged cursor drawn")

	// The control: a valid cursor is read.
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/orders?customer=c-1&after=o-1", nil))
	require.Equal(t, http.StatusOK, rec.Code, "body %s", rec.Body)
	require.Positive(t, co.lists.Load())
}
