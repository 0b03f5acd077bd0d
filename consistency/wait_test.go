package consistency_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

func TestWait_Misuse(t *testing.T) {
	t.Parallel()
	tr := setup(t, nil)

	_, err := tr.Wait(context.Background(), tok(1))
	require.ErrorIs(t, err, consistency.ErrNoNames)

	_, err = tr.Wait(context.Background(), tok(1), "orders", "")
	require.ErrorIs(t, err, consistency.ErrNoNames)
	require.ErrorContains(t, err, "name 2 of 2")
}

func TestWait_ZeroTarget(t *testing.T) {
	t.Parallel()
	pr := newFakePositions()
	tr := setup(t, &consistency.TrackerConfig{Positions: pr})
	tr.Advance("orders", tok(7))

	st, err := tr.Wait(context.Background(), events.Token{}, "orders", "never-seen")
	require.NoError(t, err)
	require.False(t, st.Stale, "a zero target has nothing to wait for")
	require.Empty(t, st.Reason)
	require.Zero(t, st.Behind)
	require.True(t, st.Checkpoint.IsZero(), "an unknown name counts as zero: Checkpoint is a lower bound")
	require.Zero(t, pr.readsOf("never-seen"), "a zero target reads nothing")
}

func TestWait_CaughtUp(t *testing.T) {
	t.Parallel()

	t.Run("AlreadyThere", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, nil)
		tr.Advance("orders", tok(9))
		tr.Advance("customers", tok(6))

		st, err := tr.Wait(context.Background(), tok(5), "orders", "customers")
		require.NoError(t, err)
		require.False(t, st.Stale)
		require.Equal(t, tok(6), st.Checkpoint, "Checkpoint is the lowest of the names")
		require.Equal(t, tok(5), st.Target)
		require.Zero(t, st.Behind)
		require.Nil(t, st.Lagging)
	})

	t.Run("ByAdvance", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, &consistency.TrackerConfig{MaxTimeout: time.Minute})
		tr.Advance("orders", tok(1))
		res := goWait(context.Background(), tr, tok(5), "orders", "customers")
		awaitParked(t, tr, func() bool { return tr.Stats().Waiters == 1 && tr.Waiting("orders")+tr.Waiting("customers") == 1 })

		tr.Advance("customers", tok(5))
		tr.Advance("orders", tok(4))
		tr.Advance("orders", tok(8))
		r := receive(t, res)
		require.NoError(t, r.err)
		require.False(t, r.st.Stale)
		require.Equal(t, tok(5), r.st.Checkpoint)
		require.Equal(t, 0, tr.Stats().Waiters)
	})

	t.Run("BySeedRead", func(t *testing.T) {
		t.Parallel()
		pr := newFakePositions()
		pr.set("orders", tok(12))
		tr := setup(t, &consistency.TrackerConfig{Positions: pr, Watcher: &fakeWatcher{}, MaxTimeout: time.Minute})

		st, err := tr.Wait(context.Background(), tok(10), "orders")
		require.NoError(t, err)
		require.False(t, st.Stale)
		require.Equal(t, tok(12), st.Checkpoint)
		require.Equal(t, 1, pr.readsOf("orders"))

		// Seeded, and push is trusted: the next wait believes the tracker.
		_, err = tr.Wait(context.Background(), tok(11), "orders")
		require.NoError(t, err)
		require.Equal(t, 1, pr.readsOf("orders"))
	})

	t.Run("ReReadWhenBehindWithoutPush", func(t *testing.T) {
		t.Parallel()
		pr := newFakePositions()
		tr := setup(t, &consistency.TrackerConfig{Positions: pr, FallbackInterval: time.Hour, MaxTimeout: time.Minute})
		tr.Advance("orders", tok(2))
		pr.set("orders", tok(12))

		// No watcher: the tracker's 2 may just be old, so the wait reads
		// once at once instead of waiting an hour for the fallback tick.
		st, err := tr.Wait(context.Background(), tok(10), "orders")
		require.NoError(t, err)
		require.False(t, st.Stale)
		require.Equal(t, 1, pr.readsOf("orders"))
	})
}

func TestWait_Stale(t *testing.T) {
	t.Parallel()

	t.Run("DefaultTimeout", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, &consistency.TrackerConfig{DefaultTimeout: 20 * time.Millisecond})
		tr.Advance("orders", tok(3))
		tr.Advance("customers", tok(9))

		st, err := tr.Wait(context.Background(), tok(5), "customers", "orders")
		require.NoError(t, err, "staleness is not an error")
		require.True(t, st.Stale)
		require.Equal(t, consistency.ReasonDeadline, st.Reason)
		require.Equal(t, tok(3), st.Checkpoint)
		require.Equal(t, tok(5), st.Target)
		require.Equal(t, []string{"orders"}, st.Lagging)
		require.Equal(t, int64(-1), st.Behind, "no Counter: Behind is unknown")
		require.GreaterOrEqual(t, st.Waited, 20*time.Millisecond)
		require.Equal(t, 0, tr.Stats().Waiters)
	})

	t.Run("ContextDeadline", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()

		st, err := tr.Wait(ctx, tok(5), "orders")
		require.NoError(t, err, "a deadline is not a cancellation")
		require.True(t, st.Stale)
		require.Equal(t, consistency.ReasonDeadline, st.Reason)
		require.Less(t, st.Waited, time.Second, "the context's deadline beats DefaultTimeout")
	})

	t.Run("ClampedToMaxTimeout", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, &consistency.TrackerConfig{MaxTimeout: 50 * time.Millisecond})
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()

		// Clamped, the wait lasts 50ms; unclamped, an hour. 10s tells
		// them apart on any machine, and the test does not wait the hour
		// out to say so.
		type result struct {
			st  consistency.Status
			err error
		}
		done := make(chan result, 1)
		start := time.Now()
		go func() {
			st, err := tr.Wait(ctx, tok(5), "orders")
			done <- result{st, err}
		}()
		var res result
		select {
		case res = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("an hour's deadline was not clamped to MaxTimeout: the wait still runs after 10s")
		}
		require.NoError(t, res.err)
		require.True(t, res.st.Stale)
		require.GreaterOrEqual(t, res.st.Waited, 50*time.Millisecond)
		require.Less(t, res.st.Waited, 10*time.Second, "an hour's deadline is clamped to MaxTimeout")
		require.Less(t, time.Since(start), 10*time.Second, "an hour's deadline is clamped to MaxTimeout")
	})

	t.Run("TokenAheadOfHead", func(t *testing.T) {
		t.Parallel()
		pr := newFakePositions()
		pr.set("orders", tok(3))
		tr := setup(t, &consistency.TrackerConfig{Positions: pr, MaxTimeout: 30 * time.Millisecond})

		st, err := tr.Wait(context.Background(), events.MakeToken(1<<60, 0), "orders")
		require.NoError(t, err)
		require.True(t, st.Stale)
		require.Equal(t, tok(3), st.Checkpoint)
	})

	t.Run("Behind", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, &consistency.TrackerConfig{Counter: fakeCounter{}, MaxTimeout: 20 * time.Millisecond})
		tr.Advance("orders", tok(3))

		st, err := tr.Wait(context.Background(), tok(10), "orders")
		require.NoError(t, err)
		require.True(t, st.Stale)
		require.Equal(t, int64(7), st.Behind)

		st, err = tr.Wait(context.Background(), tok(2), "orders")
		require.NoError(t, err)
		require.False(t, st.Stale)
		require.Zero(t, st.Behind, "fresh is zero behind, without counting")
	})

	t.Run("BehindUnknown", func(t *testing.T) {
		t.Parallel()
		failing := setup(t, &consistency.TrackerConfig{Counter: fakeCounter{err: errBoom}, MaxTimeout: 20 * time.Millisecond})
		failing.Advance("orders", tok(3))
		st, err := failing.Wait(context.Background(), tok(10), "orders")
		require.NoError(t, err)
		require.Equal(t, int64(-1), st.Behind, "a failed count is unknown")

		counting := setup(t, &consistency.TrackerConfig{Counter: fakeCounter{}, MaxTimeout: 20 * time.Millisecond})
		st, err = counting.Wait(context.Background(), tok(10), "never-seen")
		require.NoError(t, err)
		require.Equal(t, int64(-1), st.Behind, "a name never learned is not counted from zero")
	})

	t.Run("CountIsCapped", func(t *testing.T) {
		t.Parallel()
		// A Counter that never answers by itself (a database under a long
		// lock): the count gets CountTimeout from the end of the wait, not
		// the wait's context, which has run out, nor for ever.
		// The tolerance below covers the time between making the count's
		// context and calling the Counter, which a loaded machine
		// stretches. The durations keep it far below what it must tell
		// apart: the wait's own deadline (already past at the call) is at
		// least countTimeout off, and a CountTimeout counted from the start
		// of the wait rather than its end at least maxTimeout.
		const maxTimeout, countTimeout = 150 * time.Millisecond, 200 * time.Millisecond
		slow := &blockingCounter{deadline: make(chan time.Time, 1)}
		tr := setup(t, &consistency.TrackerConfig{Counter: slow, MaxTimeout: maxTimeout, CountTimeout: countTimeout})
		tr.Advance("orders", tok(3))
		st, err := tr.Wait(context.Background(), tok(10), "orders")
		require.NoError(t, err)
		require.True(t, st.Stale)
		require.Equal(t, int64(-1), st.Behind, "a count cut short is unknown")
		d := <-slow.deadline
		require.False(t, d.IsZero(), "the count had a deadline")
		require.WithinDuration(t, slow.calledAt.Add(countTimeout), d, 50*time.Millisecond, "CountTimeout from the call")
	})

	t.Run("PositionsFail", func(t *testing.T) {
		t.Parallel()
		pr := newFakePositions()
		pr.err = errBoom
		tr := setup(t, &consistency.TrackerConfig{Positions: pr, MaxTimeout: 30 * time.Millisecond})

		st, err := tr.Wait(context.Background(), tok(5), "orders")
		require.NoError(t, err, "a failing read degrades to stale, never to an error")
		require.True(t, st.Stale)
	})
}

func TestWait_Cancel(t *testing.T) {
	t.Parallel()

	t.Run("ReleasesWaiter", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, &consistency.TrackerConfig{MaxTimeout: time.Minute, DefaultTimeout: time.Minute})
		ctx, cancel := context.WithCancel(context.Background())
		res := goWait(ctx, tr, tok(5), "orders")
		awaitParked(t, tr, func() bool { return tr.Waiting("orders") == 1 })
		require.Equal(t, 1, tr.Stats().Waiters)

		cancel()
		start := time.Now()
		r := receive(t, res)
		require.ErrorIs(t, r.err, context.Canceled)
		require.Less(t, time.Since(start), 30*time.Second, "a cancelled wait returns at once, not at its one-minute deadline")
		awaitParked(t, tr, func() bool { return tr.Stats().Waiters == 0 })
		require.Equal(t, 0, tr.Waiting("orders"))
	})

	t.Run("AlreadyCancelled", func(t *testing.T) {
		t.Parallel()
		tr := setup(t, nil)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := tr.Wait(ctx, tok(5), "orders")
		require.ErrorIs(t, err, context.Canceled)
		require.Equal(t, 0, tr.Stats().Waiters)
	})
}

func TestWait_MaxWaiters(t *testing.T) {
	t.Parallel()
	// A Counter, which a rejected wait does not ask (Behind stays -1).
	tr := setup(t, &consistency.TrackerConfig{MaxWaiters: 2, MaxTimeout: time.Minute, DefaultTimeout: time.Minute, Counter: fakeCounter{}})
	tr.Advance("orders", tok(1))
	ctx, cancel := context.WithCancel(context.Background())
	first := goWait(ctx, tr, tok(5), "orders")
	second := goWait(ctx, tr, tok(5), "orders")
	awaitParked(t, tr, func() bool { return tr.Waiting("orders") == 2 })

	st, err := tr.Wait(context.Background(), tok(5), "orders")
	require.NoError(t, err, "a rejection is a stale answer, not an error")
	require.True(t, st.Stale)
	require.Equal(t, consistency.ReasonRejected, st.Reason)
	require.Equal(t, tok(1), st.Checkpoint)
	require.Equal(t, int64(-1), st.Behind, "a rejected wait counts nothing")
	require.Equal(t, uint64(1), tr.Stats().Rejected)

	st, err = tr.Wait(context.Background(), tok(1), "orders")
	require.NoError(t, err)
	require.False(t, st.Stale, "a wait that need not block is never rejected")

	cancel()
	require.ErrorIs(t, receive(t, first).err, context.Canceled)
	require.ErrorIs(t, receive(t, second).err, context.Canceled)
	require.Equal(t, 0, tr.Stats().Waiters, "cancelled waiters give their slots back")

	res := goWait(context.Background(), tr, tok(5), "orders")
	awaitParked(t, tr, func() bool { return tr.Waiting("orders") == 1 })
	tr.Advance("orders", tok(5))
	r := receive(t, res)
	require.NoError(t, r.err)
	require.False(t, r.st.Stale)
}

func TestWait_ManyWaitersOneAdvance(t *testing.T) {
	t.Parallel()
	tr := setup(t, &consistency.TrackerConfig{MaxTimeout: time.Minute, DefaultTimeout: time.Minute})
	const names, perName = 20, 25
	for i := range names {
		tr.Advance(fmt.Sprintf("model-%d", i), tok(10))
	}

	// Every waiter reads the hub and one other model; only the hub lags, so
	// all of them park on it and one Advance must wake them all.
	var results []<-chan waitResult
	for i := range names * perName {
		results = append(results, goWait(context.Background(), tr, tok(10), fmt.Sprintf("model-%d", i%names), "hub"))
	}
	awaitParked(t, tr, func() bool { return tr.Waiting("hub") == names*perName })

	tr.Advance("hub", tok(10))
	for _, res := range results {
		r := receive(t, res)
		require.NoError(t, r.err)
		require.False(t, r.st.Stale)
	}
	require.Equal(t, 0, tr.Stats().Waiters)
	require.Equal(t, 0, tr.Waiting("hub"))
}

func TestWait_ManyWaitersManyNames(t *testing.T) {
	t.Parallel()
	tr := setup(t, &consistency.TrackerConfig{MaxTimeout: time.Minute, DefaultTimeout: time.Minute})
	const names, perName = 20, 25
	results := make(map[string][]<-chan waitResult)
	for i := range names * perName {
		name := fmt.Sprintf("model-%d", i%names)
		results[name] = append(results[name], goWait(context.Background(), tr, tok(uint64(1+i%3)), name))
	}
	awaitParked(t, tr, func() bool {
		for i := range names {
			if tr.Waiting(fmt.Sprintf("model-%d", i)) != perName {
				return false
			}
		}
		return true
	})

	for name, rs := range results {
		tr.Advance(name, tok(3))
		for _, res := range rs {
			r := receive(t, res)
			require.NoError(t, r.err)
			require.False(t, r.st.Stale, name)
		}
	}
	require.Equal(t, 0, tr.Stats().Waiters)
}

func TestWait_Fallback(t *testing.T) {
	t.Parallel()

	// While push is not trusted, the fallback loop's reads move the waits
	// on, also when the store is slower to answer than the interval (a
	// busy database and a short interval): each read gets at least
	// QueryTimeout, not one interval, or every read would run out of time.
	for _, c := range []struct {
		name            string
		delay, interval time.Duration
	}{
		{"PushUnhealthy", 0, 5 * time.Millisecond},
		{"ReadsSlowerThanTheInterval", 20 * time.Millisecond, 2 * time.Millisecond},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			pr := &slowPositions{fakePositions: newFakePositions(), delay: c.delay}
			pr.set("orders", tok(1))
			tr := setup(t, &consistency.TrackerConfig{
				Positions:        pr,
				Watcher:          &fakeWatcher{},
				PushHealthy:      func() bool { return false },
				FallbackInterval: c.interval,
				QueryTimeout:     time.Minute,
				MaxTimeout:       time.Minute,
				DefaultTimeout:   time.Minute,
			})
			res := goWait(context.Background(), tr, tok(5), "orders")
			awaitParked(t, tr, func() bool { return tr.Waiting("orders") == 1 })

			pr.set("orders", tok(5))
			r := receive(t, res)
			require.NoError(t, r.err)
			require.False(t, r.st.Stale, "the fallback loop read the new position")
			require.Equal(t, tok(5), r.st.Checkpoint)
		})
	}

	t.Run("NoWatcher", func(t *testing.T) {
		t.Parallel()
		pr := newFakePositions()
		tr := setup(t, &consistency.TrackerConfig{
			Positions:        pr,
			FallbackInterval: 5 * time.Millisecond,
			MaxTimeout:       time.Minute,
			DefaultTimeout:   time.Minute,
		})
		res := goWait(context.Background(), tr, tok(5), "orders")
		awaitParked(t, tr, func() bool { return tr.Waiting("orders") == 1 })

		pr.set("orders", tok(6))
		r := receive(t, res)
		require.NoError(t, r.err)
		require.False(t, r.st.Stale)
	})

	// With push trusted a wait push answers before it has lasted a tick
	// costs no read but its seed; the loop reads only names waited on at
	// two ticks in a row (TestSafetyPollReadsEachWaitedNameOncePerTick).
	t.Run("QuietWhilePushAnswers", func(t *testing.T) {
		t.Parallel()
		pr := newFakePositions()
		w := &fakeWatcher{}
		tr, tick := setupTicked(t, &consistency.TrackerConfig{
			Positions:   pr,
			Watcher:     w,
			PushHealthy: func() bool { return true },
			MaxTimeout:  time.Minute,
		})
		res := goWait(context.Background(), tr, tok(5), "orders")
		awaitParked(t, tr, func() bool { return tr.Waiting("orders") == 1 })
		tick()
		w.push("orders", tok(5))
		r := receive(t, res)
		require.NoError(t, r.err)
		require.False(t, r.st.Stale)
		tick()
		require.Equal(t, 1, pr.readsOf("orders"), "only the first wait's seed read: push answered")
	})

	// Without push a known name is re-read (a rewind elsewhere would
	// otherwise go unseen); with push trusted an idle tracker reads nothing.
	t.Run("QuietWithoutWaitersWhilePushHealthy", func(t *testing.T) {
		t.Parallel()
		pr := newFakePositions()
		pr.read = make(chan string, 1)
		tr := setup(t, &consistency.TrackerConfig{
			Positions:        pr,
			Watcher:          &fakeWatcher{},
			PushHealthy:      func() bool { return true },
			FallbackInterval: time.Millisecond,
		})
		tr.Advance("orders", tok(1))
		select {
		case name := <-pr.read:
			t.Fatalf("fallback read %q with nobody waiting", name)
		case <-time.After(30 * time.Millisecond):
		}
	})
}

// A handler that waits inside its unit of work would hold the unit (on
// PostgreSQL its transaction id) open while it waits, stalling the feed
// the wait depends on: Wait and Read refuse, even when already fresh.
func TestWait_RefusedInsideAUnit(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	u, err := st.Checkpoints().Begin(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { _ = u.Rollback(context.Background()) })
	tr := setup(t, nil)
	tr.Advance("orders", tok(5))

	_, err = tr.Wait(u.Context(t.Context()), tok(1), "orders")
	require.ErrorIs(t, err, consistency.ErrWaitInUnit)
	_, err = consistency.Read(u.Context(t.Context()), tr, tok(1), []string{"orders"}, func(context.Context) (int, error) {
		t.Fatal("the query must not run")
		return 0, nil
	})
	require.ErrorIs(t, err, consistency.ErrWaitInUnit)

	st2, err := tr.Wait(t.Context(), tok(1), "orders")
	require.NoError(t, err, "outside the unit the same wait is fine")
	require.False(t, st2.Stale)
}

// TestWait_DocumentedDeadlines checks the package doc's numbers with a
// Tracker left at its defaults: a wait without a deadline lasts 2s, and a
// deadline an hour away is cut to 10s. (Deadlines run on real timers, so
// this test takes ten seconds.)
func TestWait_DocumentedDeadlines(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		deadline time.Duration // 0: none
		want     time.Duration
	}{
		{"NoDeadline", 0, 2 * time.Second},
		{"FarDeadline", time.Hour, 10 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tr := setup(t, nil)
			ctx := context.Background()
			if tt.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			start := time.Now()
			st, err := tr.Wait(ctx, tok(5), "orders")
			took := time.Since(start)
			require.NoError(t, err)
			require.True(t, st.Stale)
			require.Equal(t, consistency.ReasonDeadline, st.Reason)
			require.GreaterOrEqual(t, took, tt.want)
			require.GreaterOrEqual(t, st.Waited, tt.want)
			// Twice the bound: room for a loaded machine, and still far
			// below what an unbounded wait (or the hour's) would take.
			require.Less(t, took, 2*tt.want, "the wait outlived its documented bound")
		})
	}
}

// blockingCounter answers only when its context ends, and reports the
// deadline it was given.
type blockingCounter struct {
	calledAt time.Time
	deadline chan time.Time
}

func (c *blockingCounter) CountBetween(ctx context.Context, _, _ events.Token) (int64, error) {
	c.calledAt = time.Now()
	d, _ := ctx.Deadline()
	c.deadline <- d
	<-ctx.Done()
	return 0, ctx.Err()
}

// TestLearn: Learn reads the stored position of each name the tracker does
// not know, once, and waits for nothing; a name it knows is not read.
func TestLearn(t *testing.T) {
	t.Parallel()
	pr := newFakePositions()
	pr.set("orders", tok(4))
	tr := setup(t, &consistency.TrackerConfig{Positions: pr})
	tr.Advance("customers", tok(2))

	_, ok := tr.Position("orders")
	require.False(t, ok)
	require.NoError(t, tr.Learn(context.Background(), "orders", "customers", "never-written"))
	pos, ok := tr.Position("orders")
	require.True(t, ok)
	require.Equal(t, tok(4), pos)
	pos, ok = tr.Position("never-written")
	require.True(t, ok, "a name without a stored checkpoint is known to be at the start")
	require.True(t, pos.IsZero())
	require.Equal(t, 1, pr.readsOf("orders"))
	require.Zero(t, pr.readsOf("customers"), "a known name is not read")

	require.NoError(t, tr.Learn(context.Background(), "orders"))
	require.Equal(t, 1, pr.readsOf("orders"), "nor is one learned before")

	// A read that fails is reported, and leaves the name unknown.
	pr.fail(errors.New("connection refused"))
	err := tr.Learn(context.Background(), "payments", "orders")
	require.ErrorContains(t, err, "connection refused")
	require.ErrorContains(t, err, `"payments"`)
	_, ok = tr.Position("payments")
	require.False(t, ok)
}
