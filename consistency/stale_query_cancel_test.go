package consistency_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// TestRead_StaleQueryAfterTheDeadlineIsBoundedByQueryTimeout: once ctx's
// deadline has ended the wait, ctx is done and cannot carry a later
// cancellation of its parent, so, as Read's doc says, the query then runs
// until QueryTimeout (a cancellation before the deadline does reach it:
// TestRead/CancelReachesQuery). Should a way to follow the later
// cancellation appear, this test and the doc change together.
func TestRead_StaleQueryAfterTheDeadlineIsBoundedByQueryTimeout(t *testing.T) {
	t.Parallel()
	const queryTimeout = 100 * time.Millisecond
	tr := setup(t, &consistency.TrackerConfig{QueryTimeout: queryTimeout})
	tr.Advance("orders", tok(1))
	parent, cancelParent := context.WithCancel(context.Background())
	defer cancelParent()
	ctx, cancel := context.WithTimeout(parent, 20*time.Millisecond)
	defer cancel()

	var ran time.Duration
	res, err := consistency.Read(ctx, tr, tok(2), []string{"orders"}, func(qctx context.Context) (int, error) {
		require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded, "the wait ended at ctx's deadline")
		require.NoError(t, qctx.Err(), "the query starts with time left")
		start := time.Now()
		cancelParent() // the client goes away after the deadline
		<-qctx.Done()
		ran = time.Since(start)
		return 0, qctx.Err()
	})
	require.True(t, res.Stale)
	require.ErrorIs(t, err, context.DeadlineExceeded, "QueryTimeout, not the late cancellation, ended the query")
	require.GreaterOrEqual(t, ran, queryTimeout/2)
}

// TestMiddleware_ClientGoneEndsTheStaleRead: Middleware derives the wait's
// deadline from X-Consistency-Timeout but runs the handler under the
// request's own context, so a stale read has no deadline of the wait's
// and still ends as soon as the client goes away, rather than running on
// for nobody.
func TestMiddleware_ClientGoneEndsTheStaleRead(t *testing.T) {
	t.Parallel()
	tr := setup(t, &consistency.TrackerConfig{MaxTimeout: time.Minute, DefaultTimeout: time.Minute})
	tr.Advance("orders", tok(1))
	type started struct {
		stale       string
		hasDeadline bool
	}
	queryStarted := make(chan started, 1)
	queryEnded := make(chan error, 1)
	h := consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"orders"}})(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, hasDeadline := r.Context().Deadline()
			queryStarted <- started{stale: w.Header().Get(consistency.HeaderStale), hasDeadline: hasDeadline}
			<-r.Context().Done() // a query that honours its context
			queryEnded <- r.Context().Err()
		}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	ctx, leave := context.WithCancel(context.Background())
	defer leave()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL, nil)
	require.NoError(t, err)
	req.Header.Set(consistency.HeaderPosition, events.MakeToken(1<<62, 0).String())
	req.Header.Set(consistency.HeaderTimeout, "20")
	sent := make(chan error, 1)
	go func() {
		resp, err := srv.Client().Do(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		sent <- err
	}()

	s := within(t, queryStarted, "the handler did not run after the stale wait")
	require.Equal(t, "true", s.stale, "the wait ran out at the header's 20ms")
	require.False(t, s.hasDeadline, "the wait's deadline does not reach the handler")
	leave()
	require.ErrorIs(t, within(t, queryEnded, "the client went away and the read ran on"), context.Canceled)
	require.Error(t, within(t, sent, "the client's request did not end"))
}
