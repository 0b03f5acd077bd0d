package consistency_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

// TestWait_TimeoutZeroReadsAnUnknownName: a read with
// X-Consistency-Timeout: 0 does not wait, but it does start the read of a
// checkpoint the tracker has not learned, so the reads after it are
// labelled with where the store is, not with position zero for ever.
func TestWait_TimeoutZeroReadsAnUnknownName(t *testing.T) {
	t.Parallel()
	pr := &slowPositions{fakePositions: newFakePositions(), delay: 50 * time.Millisecond, started: make(chan string, 8)}
	pr.set("orders", tok(12))
	// Push is trusted and nothing pushes: only a read can teach the tracker.
	tr := setup(t, &consistency.TrackerConfig{Positions: pr, Watcher: &fakeWatcher{}, MaxTimeout: time.Minute, DefaultTimeout: time.Minute})
	h := consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"orders"}})(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	get := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, "/orders", nil)
		req.Header.Set(consistency.HeaderPosition, tok(10).String())
		req.Header.Set(consistency.HeaderTimeout, "0")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}

	start := time.Now()
	first := get()
	require.Equal(t, http.StatusOK, first.Code)
	require.Less(t, time.Since(start), 30*time.Second, "a wait of 0 does not wait for the read")
	require.Equal(t, "orders", within(t, pr.started, "a read with X-Consistency-Timeout: 0 never read the unknown checkpoint"))

	require.NoError(t, tr.Learn(context.Background(), "orders"), "Learn shares the read in flight")
	require.Equal(t, 1, pr.readsOf("orders"), "one read, started by the first request")
	second := get()
	require.Equal(t, "false", second.Header().Get(consistency.HeaderStale))
	require.Equal(t, tok(12).String(), second.Header().Get(consistency.HeaderPosition))
}

// TestWait_SharedFirstReadOutlivesItsStarter: the first read of a name is
// shared by every wait on it; the wait that started it leaving (its
// deadline passed, or its client went away) does not fail it for the
// others, who return as soon as it answers, on an idle system where no
// push will come.
func TestWait_SharedFirstReadOutlivesItsStarter(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		// starter returns the first waiter's context and makes it leave.
		starter  func() (context.Context, func())
		leftWith error
	}{
		{"ShortDeadline", func() (context.Context, func()) {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			return ctx, func() { <-ctx.Done(); cancel() }
		}, nil},
		{"ClientGone", func() (context.Context, func()) {
			return context.WithCancel(context.Background())
		}, context.Canceled},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pr := newGatedPositions()
			pr.set("orders", tok(12))
			tr := setup(t, &consistency.TrackerConfig{Positions: pr, Watcher: &fakeWatcher{}, MaxTimeout: time.Minute, DefaultTimeout: time.Minute})

			actx, leave := c.starter()
			a := goWait(actx, tr, tok(10), "orders")
			within(t, pr.started, "the first wait did not read")
			// The second wait's deadline is far: waiting it out is the bug.
			bctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			b := goWait(bctx, tr, tok(10), "orders")
			awaitParked(t, tr, func() bool { return tr.Stats().Waiters == 2 })

			leave()
			ra := receive(t, a)
			require.ErrorIs(t, ra.err, c.leftWith)
			require.True(t, ra.st.Stale, "the first wait left before the read answered")

			close(pr.release)
			rb := receive(t, b)
			require.NoError(t, rb.err)
			require.False(t, rb.st.Stale, "the second wait took the shared read's answer")
			require.Equal(t, tok(12), rb.st.Checkpoint)
			require.Less(t, rb.st.Waited, 3*time.Second, "it did not wait out its deadline")
			require.NoError(t, within(t, pr.ended, "the read did not end"), "the read did not end with the wait that started it")
			require.Empty(t, pr.ended, "one read, shared")
		})
	}
}

// TestWait_SharedFirstReadRandomCallers: concurrent first waits on a name,
// with random deadlines (none, already passed, shorter or longer than the
// read) and clients going away, start in turn. Every wait whose
// deadline outlasts the read returns fresh once it answers, whichever
// wait started it; the store is read once.
func TestWait_SharedFirstReadRandomCallers(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	const readTakes = 50 * time.Millisecond
	for round := range 8 {
		pr := &slowPositions{fakePositions: newFakePositions(), delay: readTakes}
		pr.set("orders", tok(12))
		tr := setup(t, &consistency.TrackerConfig{Positions: pr, Watcher: &fakeWatcher{}, MaxTimeout: time.Minute, DefaultTimeout: 4 * time.Second})

		type caller struct {
			kind string
			res  <-chan waitResult
		}
		n := 2 + rng.IntN(7)
		callers := make([]caller, n)
		var cancels []context.CancelFunc
		for i := range callers {
			kind := []string{"long", "none", "passed", "short", "gone"}[rng.IntN(5)]
			if i == n-1 {
				kind = "long" // at least one wait outlasts the read
			}
			ctx := context.Background()
			var cancel context.CancelFunc
			switch kind {
			case "long":
				ctx, cancel = context.WithTimeout(ctx, 4*time.Second)
			case "passed":
				ctx, cancel = context.WithTimeout(ctx, 0)
			case "short":
				ctx, cancel = context.WithTimeout(ctx, time.Duration(1+rng.IntN(20))*time.Millisecond)
			case "gone":
				ctx, cancel = context.WithCancel(ctx)
				time.AfterFunc(time.Duration(rng.IntN(20))*time.Millisecond, cancel)
			default:
				cancel = func() {}
			}
			cancels = append(cancels, cancel)
			callers[i] = caller{kind, goWait(ctx, tr, tok(10), "orders")}
		}

		for _, c := range callers {
			r := receive(t, c.res)
			switch c.kind {
			case "long", "none":
				require.NoError(t, r.err, "round %d", round)
				require.False(t, r.st.Stale, "round %d: a %s wait outlasts the read", round, c.kind)
				require.Equal(t, tok(12), r.st.Checkpoint, "round %d", round)
				require.Less(t, r.st.Waited, 4*time.Second, "round %d: a %s wait returns once the read answers", round, c.kind)
			case "gone":
				if r.err != nil {
					require.ErrorIs(t, r.err, context.Canceled, "round %d", round)
				}
			default:
				require.NoError(t, r.err, "round %d: a deadline is not an error", round)
			}
		}
		for _, cancel := range cancels {
			cancel()
		}
		require.Equal(t, 1, pr.readsOf("orders"), "round %d: one read, shared", round)
	}
}

// TestWait_StopEndsTheSharedRead: Stop releases a wait blocked on the
// first read, and ends the read.
func TestWait_StopEndsTheSharedRead(t *testing.T) {
	t.Parallel()
	pr := newGatedPositions()
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: pr, MaxTimeout: time.Minute, DefaultTimeout: time.Minute, QueryTimeout: time.Minute})
	require.NoError(t, err)
	require.NoError(t, tr.Start(context.Background()))
	res := goWait(context.Background(), tr, tok(10), "orders")
	within(t, pr.started, "the wait did not read")

	require.NoError(t, tr.Stop(context.Background()))
	r := receive(t, res)
	require.NoError(t, r.err)
	require.True(t, r.st.Stale)
	require.Equal(t, consistency.ReasonStopped, r.st.Reason)
	require.ErrorIs(t, within(t, pr.ended, "Stop did not end the read"), context.Canceled)
}

// TestLearn_ReadIsBoundedByQueryTimeout: a read that never answers gets
// QueryTimeout, whoever waits for it, and however long.
func TestLearn_ReadIsBoundedByQueryTimeout(t *testing.T) {
	t.Parallel()
	pr := newGatedPositions() // never released
	tr := setup(t, &consistency.TrackerConfig{Positions: pr, QueryTimeout: 50 * time.Millisecond})
	learned := make(chan error, 1)
	go func() { learned <- tr.Learn(context.Background(), "orders") }()
	err := within(t, learned, "a read without a deadline of its caller's ran past QueryTimeout")
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, known := tr.Position("orders")
	require.False(t, known)
}

// TestWait_GroupFirstReadReadsEachMember: the first wait on a group reads
// every member, together, and is fresh once the slowest has answered;
// groups made members of each other in a circle end the read, not the
// process.
func TestWait_GroupFirstReadReadsEachMember(t *testing.T) {
	t.Parallel()
	pr := &slowPositions{fakePositions: newFakePositions(), delay: 20 * time.Millisecond}
	pr.set("summary#0", tok(14))
	pr.set("summary#1", tok(11))
	pr.set("summary#2", tok(19))
	tr := setup(t, &consistency.TrackerConfig{Positions: pr, Watcher: &fakeWatcher{}, MaxTimeout: time.Minute, DefaultTimeout: 5 * time.Second})
	tr.Group("summary", "summary#0", "summary#1", "summary#2")

	st, err := tr.Wait(context.Background(), tok(10), "summary")
	require.NoError(t, err)
	require.False(t, st.Stale)
	require.Equal(t, tok(11), st.Checkpoint, "the group is its slowest member")
	for i := range 3 {
		require.Equal(t, 1, pr.readsOf(fmt.Sprintf("summary#%d", i)))
	}

	tr.Group("a", "b")
	tr.Group("b", "a")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	st, err = tr.Wait(ctx, tok(1), "a")
	require.NoError(t, err)
	require.True(t, st.Stale, "a circle of groups is never known")
}
