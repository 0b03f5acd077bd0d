package consistency_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// snapPositions reads store as a query does: the position is taken when the
// read starts, and, while gated, answered only once release is closed, so
// the store can move meanwhile. started gets the name as each gated read
// takes its snapshot.
type snapPositions struct {
	store   *fakePositions
	gated   atomic.Bool
	started chan string
	release chan struct{}
}

func newSnapPositions(store *fakePositions) *snapPositions {
	return &snapPositions{store: store, started: make(chan string, 8), release: make(chan struct{})}
}

func (s *snapPositions) Position(ctx context.Context, name string) (events.Token, error) {
	pos, err := s.store.Position(ctx, name)
	if !s.gated.Load() {
		return pos, err
	}
	s.started <- name
	select {
	case <-s.release:
		return pos, err
	case <-ctx.Done():
		return events.Token{}, ctx.Err()
	}
}

// requireStaleAt fails unless the tracker holds name at pos and calls a
// wait for target stale. The wait's deadline has passed already: the
// tracker answers from what it knows, without waiting.
func requireStaleAt(t *testing.T, tr *consistency.Tracker, name string, pos, target events.Token) {
	t.Helper()
	got, _ := tr.Position(name)
	require.Equal(t, pos.Minor(), got.Minor(), "the tracker's position of %s", name)
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	st, err := tr.Wait(ctx, target, name)
	require.NoError(t, err)
	require.True(t, st.Stale, "%s is at %d, yet a wait for %d is reported fresh", name, pos.Minor(), target.Minor())
}

// TestTrackerReportedResetSurvivesAReadInFlight_FirstRead: the first read
// of a name takes its snapshot (200); the read model is then reset
// elsewhere, and the Watcher reports it (50), before the read answers. The
// read's answer does not undo the reset: the tracker reads again, and a
// wait for a token between the two positions stays stale.
func TestTrackerReportedResetSurvivesAReadInFlight_FirstRead(t *testing.T) {
	t.Parallel()
	store := newFakePositions()
	store.set("view", tok(200))
	sp := newSnapPositions(store)
	sp.gated.Store(true)
	w := &fakeWatcher{}
	tr := setup(t, &consistency.TrackerConfig{Positions: sp, Watcher: w})

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	first := goWait(ctx, tr, tok(200), "view")
	within(t, sp.started, "the first read did not start")
	store.set("view", tok(50)) // reset elsewhere, committed...
	w.push("view", tok(50))    // ...and reported
	require.True(t, receive(t, first).st.Stale)

	// Returns as soon as the tracker believes 200 again.
	bctx, bcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer bcancel()
	believed := goWait(bctx, tr, tok(200), "view")
	awaitParked(t, tr, func() bool { return tr.Waiting("view") == 1 })

	close(sp.release) // the read from before the reset answers now
	select {
	case r := <-believed:
		t.Fatalf("the read from before the reset undid it: the tracker says %d", r.st.Checkpoint.Minor())
	case <-sp.started:
		// It read again, after the report, so its answer is the reset's.
	case <-time.After(5 * time.Second):
		t.Fatal("the read from before the reset was never answered for")
	}
	bcancel()
	r := receive(t, believed)
	require.ErrorIs(t, r.err, context.Canceled)
	require.True(t, r.st.Stale)
	requireStaleAt(t, tr, "view", tok(50), tok(150))
}

// TestTrackerReportedResetSurvivesAReadInFlight_Verify: the tracker knows a
// name at 200, and a lagging wait (push down) reads it; the read takes its
// snapshot (200), then the read model is reset elsewhere and the Watcher
// reports 50. The verification of that report shares the read in flight,
// and still finds the store at 50: the read reads again before it answers,
// so the tracker moves back to 50, and a wait for a token between the two
// positions is stale.
func TestTrackerReportedResetSurvivesAReadInFlight_Verify(t *testing.T) {
	t.Parallel()
	store := newFakePositions()
	store.set("view", tok(200))
	sp := newSnapPositions(store)
	var healthy atomic.Bool
	w := &fakeWatcher{}
	tr := setup(t, &consistency.TrackerConfig{Positions: sp, Watcher: w, PushHealthy: healthy.Load, FallbackInterval: time.Hour})
	require.NoError(t, tr.Learn(context.Background(), "view"))
	joined := make(chan string, 8)
	consistency.SetJoinHook(tr, func(name string) {
		select {
		case joined <- name:
		default:
		}
	})
	sp.gated.Store(true)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	first := goWait(ctx, tr, tok(300), "view") // push is down: a lagging wait reads, and sees 200
	within(t, sp.started, "the lagging wait did not read")
	require.True(t, receive(t, first).st.Stale)

	healthy.Store(true)
	store.set("view", tok(50)) // reset elsewhere, committed...
	w.push("view", tok(50))    // ...and reported
	require.Equal(t, "view", within(t, joined, "the fallback loop did not verify the report by sharing the read in flight"))

	close(sp.release) // the read from before the reset answers now
	require.Equal(t, "view", within(t, sp.started, "the verification took the answer of the read from before the reset: no read started after the report"))
	require.Eventually(t, func() bool {
		pos, _ := tr.Position("view")
		return pos == tok(50)
	}, 5*time.Second, time.Millisecond, "the tracker did not believe the store the verification read")
	requireStaleAt(t, tr, "view", tok(50), tok(150))
}
