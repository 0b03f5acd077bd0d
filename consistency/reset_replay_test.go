package consistency_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// replayPositions answers reads after delay.
type replayPositions struct {
	store *fakePositions
	delay time.Duration
}

func (s *replayPositions) Position(ctx context.Context, name string) (events.Token, error) {
	pos, err := s.store.Position(ctx, name)
	t := time.NewTimer(s.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return events.Token{}, ctx.Err()
	}
	return pos, err
}

// TestTrackerLearnsAResetWhileTheModelReplays: a read model this tracker
// knows at 200 is reset elsewhere to 50 and replays, its checkpoint
// reported every millisecond (each report behind 200), faster than a read
// of the store answers. The tracker learns of the reset all the same, in
// a few reads, instead of re-reading for as long as the replay reports
// and calling the rewound model fresh meanwhile.
func TestTrackerLearnsAResetWhileTheModelReplays(t *testing.T) {
	t.Parallel()
	store := newFakePositions()
	store.set("view", tok(200))
	sp := &replayPositions{store: store, delay: 3 * time.Millisecond}
	w := &fakeWatcher{}
	tr := setup(t, &consistency.TrackerConfig{Positions: sp, Watcher: w})
	require.NoError(t, tr.Learn(context.Background(), "view"))

	store.set("view", tok(50)) // reset elsewhere
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		tick := time.NewTicker(time.Millisecond) // the replay's pace
		defer tick.Stop()
		for i := uint64(51); ; i = min(i+1, 190) {
			store.set("view", tok(i))
			w.push("view", tok(i))
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	defer func() { close(stop); <-done }()
	require.Eventually(t, func() bool {
		pos, _ := tr.Position("view")
		return pos.Before(tok(200))
	}, 5*time.Second, time.Millisecond, "the tracker still says 200: the reset made elsewhere was never learned")
	ctx, cancel := context.WithTimeout(context.Background(), 0) // answer from what it knows
	defer cancel()
	st, err := tr.Wait(ctx, tok(195), "view")
	require.NoError(t, err)
	require.True(t, st.Stale, "a wait past the replay's position is fresh")
}
