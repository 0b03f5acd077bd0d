package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
	"github.com/converge-es/converge/saga/sagatest"
)

func purgedIgnored(fx *sagatest.Fixture) float64 {
	return testutil.ToFloat64(fx.Engine().Metrics().Purged.WithLabelValues(orders, "ignored"))
}

func purge(t *testing.T, fx *sagatest.Fixture) int {
	t.Helper()
	n, err := fx.Engine().PurgeEnded(context.Background())
	require.NoError(t, err)
	return n
}

// TestRetentionPurgesIgnoredMessagesForIDsWithoutInstance: a message
// ignored for an id that never had an instance is listed by Show until
// Retention has passed, then the sweep deletes its record and index row.
func TestRetentionPurgesIgnoredMessagesForIDsWithoutInstance(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, withRetention(retention))
		fx.Given(ev("ghost", Ping{OrderID: "ghost", N: 1}))
		fx.Clock().Advance(10 * time.Minute)
		fx.Given(ev("ghost", PaymentCharged{OrderID: "ghost"}), ev("other", Ping{OrderID: "other"}))
		require.Len(t, fx.History(orders, "ghost").Ignored, 2)
		require.Equal(t, 3, tableRows(t, fx, "ignored_index"))

		fx.Clock().Advance(retention - time.Minute)
		require.Zero(t, purge(t, fx), "no instance was purged")
		tl := fx.History(orders, "ghost")
		require.Len(t, tl.Ignored, 1, "only the message ignored more than Retention ago")
		require.Equal(t, "payment.charged", tl.Ignored[0].EventType)
		require.Len(t, fx.History(orders, "other").Ignored, 1)
		require.Equal(t, 1.0, purgedIgnored(fx))
		require.Equal(t, 2, tableRows(t, fx, "ignored_index"))

		fx.Clock().Advance(2 * time.Minute)
		require.Zero(t, purge(t, fx))
		for _, id := range []string{"ghost", "other"} {
			_, err := fx.Engine().Show(context.Background(), orders, id)
			require.ErrorIs(t, err, saga.ErrNotFound)
			require.Empty(t, fx.History(orders, id).Ignored, id)
			require.Zero(t, rowsOf(t, fx, "ignored", id), id)
		}
		require.Zero(t, tableRows(t, fx, "ignored_index"))
		require.Equal(t, 3.0, purgedIgnored(fx))
		require.Zero(t, testutil.ToFloat64(fx.Engine().Metrics().Purged.WithLabelValues(orders, "instance")))

		// Nothing left: a second pass does nothing.
		require.Zero(t, purge(t, fx))
		require.Equal(t, 3.0, purgedIgnored(fx))
	})
}

// TestRetentionKeepsARedeliveredIgnoredMessage: a redelivery rewrites the
// record at its own time, and the record lives Retention from then; the
// first index row is stale and goes alone.
func TestRetentionKeepsARedeliveredIgnoredMessage(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, withRetention(retention))
		fx.Given(ev("ghost", Ping{OrderID: "ghost"}))
		envs, err := fx.Store().ReadStream(ctx, "order-ghost", 0, 1)
		require.NoError(t, err)
		require.Len(t, envs, 1)

		fx.Clock().Advance(retention / 2)
		again := fx.Clock().Now().UTC()
		require.NoError(t, drive.Unit(ctx, fx.Store(), 0, func(ctx context.Context) error { return fx.Engine().Handle(ctx, envs[0]) }))
		require.Equal(t, 2, tableRows(t, fx, "ignored_index"))

		fx.Clock().Advance(retention/2 + time.Minute)
		purge(t, fx)
		tl := fx.History(orders, "ghost")
		require.Len(t, tl.Ignored, 1, "ignored again less than Retention ago")
		require.Equal(t, again, tl.Ignored[0].At.UTC())
		require.Equal(t, 1, tableRows(t, fx, "ignored_index"), "the stale index row is gone")
		require.Zero(t, purgedIgnored(fx))

		fx.Clock().Advance(retention / 2)
		purge(t, fx)
		require.Empty(t, fx.History(orders, "ghost").Ignored)
		require.Zero(t, tableRows(t, fx, "ignored_index"))
		require.Equal(t, 1.0, purgedIgnored(fx))
	})
}

// TestRetentionLeavesIgnoredMessagesToTheirInstance: a message ignored
// before an instance with its id started belongs to the instance: Show
// lists it while the instance runs, however old, and the instance's own
// purge deletes it.
func TestRetentionLeavesIgnoredMessagesToTheirInstance(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, withRetention(retention))
		fx.Given(ev("1", Ping{OrderID: "1"}), placed("1", 30))
		fx.ExpectStatus(orders, "1", saga.StatusRunning)

		fx.Clock().Advance(retention + time.Minute)
		require.Zero(t, purge(t, fx))
		require.Len(t, fx.History(orders, "1").Ignored, 1, "the running instance keeps it")
		require.Zero(t, tableRows(t, fx, "ignored_index"), "the instance owns the record now")
		require.Zero(t, purgedIgnored(fx))

		require.NoError(t, fx.Engine().Cancel(ctx, orders, "1", "test"))
		fx.Clock().Advance(retention + time.Minute)
		require.Equal(t, 1, purge(t, fx))
		require.Empty(t, fx.History(orders, "1").Ignored)
		require.Zero(t, rowsOf(t, fx, "ignored", "1"))
	})
}
