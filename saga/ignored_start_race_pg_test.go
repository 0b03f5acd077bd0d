package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga/internal/drive"
)

// TestIgnoredMessageRacingTheStartStaysIgnored: a message ignored for
// want of an instance while another partition starts that instance stays
// ignored. The start adopts the ignored record, which it can only do
// once the ignoring unit has committed: they meet on the id's claim, and
// the start waits. So a redelivery of the message is the no-op every
// duplicate delivery is, instead of running the handler the first
// delivery skipped. PostgreSQL only: a locked read of a missing row
// locks nothing there, and without the claim the start would commit
// first, blind to the record.
func TestIgnoredMessageRacingTheStartStaysIgnored(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	db, store, b := newPGBare(t, ctx)
	start := b.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 7})
	ping := b.append(t, "order-1", Ping{OrderID: "1", N: 42})

	// No instance yet: the ping is ignored, in a unit held open.
	release := holdUnit(t, ctx, store, func(ctx context.Context) error { return b.engine.Handle(ctx, ping) })
	// Another partition starts the instance meanwhile. It must wait for
	// the ignoring unit (a statement of this test's schema waiting on a
	// lock); without the claim it would finish at once.
	second := make(chan error, 1)
	go func() {
		second <- drive.Unit(ctx, store, 0, func(ctx context.Context) error { return b.engine.Handle(ctx, start) })
	}()
	var startErr error
	startDone := false
	require.Eventually(t, func() bool {
		select {
		case startErr = <-second:
			startDone = true
			return true
		default:
		}
		n, err := lockWaits(ctx, db)
		require.NoError(t, err)
		return n > 0
	}, 30*time.Second, 5*time.Millisecond, "the start neither waited nor finished")
	require.NoError(t, release())
	if !startDone {
		startErr = <-second
	}
	require.NoError(t, startErr)

	tl, err := b.engine.Show(ctx, orders, "1")
	require.NoError(t, err)
	require.Len(t, tl.Ignored, 1, "the ping was ignored")
	_, st := b.state(t, "1")
	require.Empty(t, st.Pings)

	b.deliver(t, ping) // a redelivery of the ignored message
	_, st = b.state(t, "1")
	require.Empty(t, st.Pings, "a redelivery of an ignored message ran its handler: a duplicate delivery was not a no-op")
}
