package consistency_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// lingeringPositions is a Positions whose read, once its context ends,
// says so on cancelled and returns only when finish is closed: a driver
// still tidying up after a cancel.
type lingeringPositions struct {
	started, cancelled chan struct{}
	finish             chan struct{}
}

func (l *lingeringPositions) Position(ctx context.Context, _ string) (events.Token, error) {
	close(l.started)
	<-ctx.Done()
	close(l.cancelled)
	<-l.finish
	return events.Token{}, ctx.Err()
}

// TestStopWaitsForTheReadsItEnds: Stop ends the reads of Positions in
// flight and returns only once they have returned, so a caller closing the
// store right after Stop has no read still running on it.
func TestStopWaitsForTheReadsItEnds(t *testing.T) {
	t.Parallel()
	pos := &lingeringPositions{started: make(chan struct{}), cancelled: make(chan struct{}), finish: make(chan struct{})}
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: pos, FallbackInterval: time.Hour})
	require.NoError(t, err)
	require.NoError(t, tr.Start(context.Background()))

	// A wait of 0 starts the first read of the name and returns.
	ctx, cancel := context.WithTimeout(context.Background(), 0)
	defer cancel()
	st, err := tr.Wait(ctx, events.MakeToken(1, 1), "orders")
	require.NoError(t, err)
	require.True(t, st.Stale)
	within(t, pos.started, "the first wait did not start a read")

	stopped := make(chan error, 1)
	go func() { stopped <- tr.Stop(context.Background()) }()
	within(t, pos.cancelled, "Stop did not end the read in flight")
	select {
	case err := <-stopped:
		t.Fatalf("Stop returned (%v) while the read it ended was still running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(pos.finish)
	require.NoError(t, within(t, stopped, "Stop did not return once the read had"))

	// A Stop bounded by its context says so when a read outlives it.
	pos2 := &lingeringPositions{started: make(chan struct{}), cancelled: make(chan struct{}), finish: make(chan struct{})}
	defer close(pos2.finish)
	tr2, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: pos2, FallbackInterval: time.Hour})
	require.NoError(t, err)
	require.NoError(t, tr2.Start(context.Background()))
	_, err = tr2.Wait(ctx, events.MakeToken(1, 1), "orders")
	require.NoError(t, err)
	within(t, pos2.started, "the first wait did not start a read")
	sctx, scancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer scancel()
	require.ErrorIs(t, tr2.Stop(sctx), context.DeadlineExceeded)
}
