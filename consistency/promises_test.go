package consistency_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// TestMiddleware_NextOverridesTheHeaders: the middleware sets
// X-Consistency-Position and X-Consistency-Stale before next runs, on
// the ResponseWriter it was given, so next sees them and may replace
// them: the response carries next's values, once.
func TestMiddleware_NextOverridesTheHeaders(t *testing.T) {
	t.Parallel()
	tr := setup(t, nil)
	tr.Advance("orders", tok(3))
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			rec := httptest.NewRecorder()
			var seen http.Header
			var reached http.ResponseWriter
			h := consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"orders"}})(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				reached = w
				seen = w.Header().Clone()
				// A handler that knows better, e.g. one that read a newer
				// position along with its row.
				w.Header().Set(consistency.HeaderPosition, tok(9).String())
				w.Header().Set(consistency.HeaderStale, "true")
			}))
			req := httptest.NewRequest(method, "/orders", nil)
			req.Header.Set(consistency.HeaderPosition, tok(2).String())
			h.ServeHTTP(rec, req)

			require.Same(t, rec, reached, "next gets the ResponseWriter unwrapped")
			require.Equal(t, tok(3).String(), seen.Get(consistency.HeaderPosition), "the label is set before next runs")
			require.Equal(t, "false", seen.Get(consistency.HeaderStale))
			res := rec.Result()
			require.NoError(t, res.Body.Close())
			require.Equal(t, []string{tok(9).String()}, res.Header.Values(consistency.HeaderPosition), "next's position, alone")
			require.Equal(t, []string{"true"}, res.Header.Values(consistency.HeaderStale), "next's staleness, alone")
		})
	}
}

// TestNewTracker_QueryTimeoutIsNamed: a negative QueryTimeout is refused
// with an error naming the field.
func TestNewTracker_QueryTimeoutIsNamed(t *testing.T) {
	t.Parallel()
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{QueryTimeout: -time.Nanosecond})
	require.ErrorContains(t, err, "TrackerConfig.QueryTimeout")
	require.Nil(t, tr)
	tr, err = consistency.NewTracker(&consistency.TrackerConfig{QueryTimeout: time.Nanosecond})
	require.NoError(t, err)
	require.NoError(t, tr.Stop(context.Background()))
}

// TestTrackerDocumentedDefaults: a TrackerConfig left at zero gets the
// documented QueryTimeout (1s), CountTimeout (100ms) and MaxWaiters
// (10000), each seen from what it bounds.
func TestTrackerDocumentedDefaults(t *testing.T) {
	t.Parallel()

	t.Run("QueryTimeout", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, time.Second, consistency.DefaultQueryTimeout)
		tr := setup(t, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		res, err := consistency.Read(ctx, tr, tok(4), []string{"orders"},
			func(qctx context.Context) (time.Duration, error) {
				dl, ok := qctx.Deadline()
				if !ok {
					return -1, errors.New("the query has no deadline")
				}
				return time.Until(dl), qctx.Err()
			})
		require.NoError(t, err, "the stale query ran under a live context")
		require.True(t, res.Stale)
		require.LessOrEqual(t, res.Value, time.Second, "the query's budget is DefaultQueryTimeout")
		require.Greater(t, res.Value, 500*time.Millisecond, "the query's budget is DefaultQueryTimeout")
	})

	t.Run("CountTimeout", func(t *testing.T) {
		t.Parallel()
		require.Equal(t, 100*time.Millisecond, consistency.DefaultCountTimeout)
		slow := &blockingCounter{deadline: make(chan time.Time, 1)}
		tr := setup(t, &consistency.TrackerConfig{Counter: slow, MaxTimeout: 30 * time.Millisecond})
		tr.Advance("orders", tok(3))
		st, err := tr.Wait(context.Background(), tok(10), "orders")
		require.NoError(t, err)
		require.True(t, st.Stale)
		d := <-slow.deadline
		require.False(t, d.IsZero(), "the count had a deadline")
		budget := d.Sub(slow.calledAt)
		require.LessOrEqual(t, budget, 100*time.Millisecond, "the count's budget is DefaultCountTimeout")
		require.Greater(t, budget, 50*time.Millisecond, "the count's budget is DefaultCountTimeout")
	})

	t.Run("MaxWaiters", func(t *testing.T) {
		t.Parallel()
		const limit = 10_000
		require.Equal(t, limit, consistency.DefaultMaxWaiters)
		tr := setup(t, &consistency.TrackerConfig{MaxTimeout: time.Minute, DefaultTimeout: time.Minute})
		tr.Advance("orders", tok(1))
		results := make(chan waitResult, limit)
		for range limit {
			go func() {
				st, err := tr.Wait(context.Background(), tok(5), "orders")
				results <- waitResult{st, err}
			}()
		}
		deadline := time.After(60 * time.Second)
		for {
			changed := tr.WaitersChanged()
			st := tr.Stats()
			require.Zero(t, st.Rejected, "a wait within the default limit was rejected (%d blocking)", st.Waiters)
			if st.Waiters == limit {
				break
			}
			select {
			case <-changed:
			case <-deadline:
				t.Fatalf("the waits did not all block: %+v", tr.Stats())
			}
		}

		// One more is turned away at once, not after its deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := tr.Wait(ctx, tok(5), "orders")
		require.NoError(t, err)
		require.Equal(t, consistency.ReasonRejected, st.Reason, "wait number %d", limit+1)
		require.Equal(t, uint64(1), tr.Stats().Rejected)

		tr.Advance("orders", tok(5))
		for range limit {
			select {
			case r := <-results:
				require.NoError(t, r.err)
				require.False(t, r.st.Stale)
			case <-time.After(30 * time.Second):
				t.Fatal("a blocked wait did not return after the advance")
			}
		}
	})
}

// someFail is a PositionReader whose reads of the failing names fail.
type someFail struct {
	*fakePositions
	failing map[string]bool
}

func (s someFail) Position(ctx context.Context, name string) (events.Token, error) {
	pos, err := s.fakePositions.Position(ctx, name)
	if s.failing[name] {
		return events.Token{}, fmt.Errorf("connection reset while reading %s", name)
	}
	return pos, err
}

// TestLearn_ReadsTheOthersAfterAFailure: when the reads of some names
// fail, Learn returns the first failure's error and still reads every
// other name: those are learned (at their stored position, or at the
// start when none is stored), the failed ones stay unknown. Which names
// fail, their order and their positions are drawn at random.
func TestLearn_ReadsTheOthersAfterAFailure(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 9))
	for round := range 20 {
		n := 2 + rng.IntN(7)
		names := make([]string, n)
		failing := map[string]bool{}
		pr := newFakePositions()
		stored := map[string]events.Token{}
		for i := range names {
			names[i] = "model-" + strconv.Itoa(i)
			if rng.IntN(2) == 0 {
				failing[names[i]] = true
			}
			if rng.IntN(3) > 0 {
				stored[names[i]] = tok(1 + uint64(rng.IntN(100)))
				pr.set(names[i], stored[names[i]])
			}
		}
		// At least one failure with a readable name after it.
		f := rng.IntN(n - 1)
		failing[names[f]] = true
		delete(failing, names[n-1])
		first := ""
		for _, name := range names {
			if failing[name] {
				first = name
				break
			}
		}

		tr := setup(t, &consistency.TrackerConfig{Positions: someFail{pr, failing}})
		err := tr.Learn(context.Background(), names...)
		require.ErrorContains(t, err, strconv.Quote(first), "round %d: the first failure is returned", round)
		require.ErrorContains(t, err, "connection reset", "round %d", round)
		for _, name := range names {
			require.Equal(t, 1, pr.readsOf(name), "round %d: %s read once", round, name)
			pos, known := tr.Position(name)
			if failing[name] {
				require.False(t, known, "round %d: %s could not be read: still unknown", round, name)
				continue
			}
			require.True(t, known, "round %d: %s was read after %s failed", round, name, first)
			require.Equal(t, stored[name], pos, "round %d: %s", round, name)
		}
	}
}

// TestCatalog_HandlerHeadAndNoStore: GET and HEAD are answered with the
// same headers, Cache-Control: no-store among them (checkpoints move);
// HEAD has no body.
func TestCatalog_HandlerHeadAndNoStore(t *testing.T) {
	t.Parallel()
	tr := setup(t, nil)
	tr.Advance("order_summary", tok(5))
	h := newCatalog(t).Handler(tr)

	get := httptest.NewRecorder()
	h.ServeHTTP(get, httptest.NewRequest(http.MethodGet, "/read-models", nil))
	require.Equal(t, http.StatusOK, get.Code)
	require.Equal(t, "no-store", get.Header().Get("Cache-Control"))
	require.Contains(t, get.Body.String(), tok(5).String())

	head := httptest.NewRecorder()
	h.ServeHTTP(head, httptest.NewRequest(http.MethodHead, "/read-models", nil))
	require.Equal(t, http.StatusOK, head.Code)
	require.Equal(t, "no-store", head.Header().Get("Cache-Control"))
	require.Equal(t, "application/json", head.Header().Get("Content-Type"))
	require.Zero(t, head.Body.Len(), "HEAD has no body: %q", head.Body.String())

	// Other methods are refused, naming the two it serves.
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/read-models", nil))
		require.Equal(t, http.StatusMethodNotAllowed, rec.Code, method)
		require.Equal(t, "GET, HEAD", rec.Header().Get("Allow"), method)
	}
}
