package saga_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
	"github.com/converge-es/converge/saga/sagatest"
)

const retention = 24 * time.Hour

func withRetention(d time.Duration) setup {
	return setup{config: func(c *sagatest.Config) {
		c.Engine = func(ec *saga.EngineConfig) { ec.Retention = d }
	}}
}

// rowsOf counts an instance's rows in one of the engine's tables.
func rowsOf(t *testing.T, fx *sagatest.Fixture, table, id string) int {
	t.Helper()
	rows, err := fx.Store().Rows().List(context.Background(), "converge.saga", table, feed.RowQuery{Prefix: orders + "/" + id + "/", Limit: 10000})
	require.NoError(t, err)
	return len(rows)
}

// tableRows counts every row of one of the engine's tables.
func tableRows(t *testing.T, fx *sagatest.Fixture, table string) int {
	t.Helper()
	rows, err := fx.Store().Rows().List(context.Background(), "converge.saga", table, feed.RowQuery{Limit: 10000})
	require.NoError(t, err)
	return len(rows)
}

// claimed reports whether an instance id's claim row exists.
func claimed(t *testing.T, fx *sagatest.Fixture, id string) bool {
	t.Helper()
	_, ok, err := fx.Store().Rows().Get(context.Background(), "converge.saga", "claims", orders+"/"+id, feed.LockNone)
	require.NoError(t, err)
	return ok
}

func complete(fx *sagatest.Fixture, id string) {
	fx.Given(placed(id, 30), ev(id, StockReserved{OrderID: id}), ev(id, PaymentCharged{OrderID: id}))
	fx.ExpectStatus(orders, id, saga.StatusCompleted)
}

func TestRetentionPurgesEndedInstancesOnly(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, withRetention(retention))
		eng := fx.Engine()
		fx.Given(placed("running", 10))
		complete(fx, "old")
		// The clock moves without settling, so the running instance's
		// payment timer never fires and it stays running.
		fx.Clock().Advance(20 * time.Minute)
		complete(fx, "young")
		before := map[string]saga.Timeline{"running": fx.History(orders, "running"), "young": fx.History(orders, "young")}
		require.Positive(t, rowsOf(t, fx, "handled", "old"))

		fx.Clock().Advance(retention - 10*time.Minute)
		n, err := eng.PurgeEnded(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n, "only the instance ended more than Retention ago")
		require.Equal(t, 1.0, testutil.ToFloat64(eng.Metrics().Purged.WithLabelValues(orders, "instance")))
		for _, table := range []string{"handled", "history", "ignored", "mailbox"} {
			want := 0
			if table == "history" {
				want = 1 // the purge's own note
			}
			require.Equal(t, want, rowsOf(t, fx, table, "old"), table)
		}
		tl := fx.History(orders, "old")
		require.Equal(t, saga.StatusCompleted, tl.Info.Status)
		require.Equal(t, []string{saga.KindPurged}, kinds(tl), "show says the history was purged")
		require.Equal(t, fx.Clock().Now().UTC(), tl.Info.Purged.UTC())
		require.False(t, tl.Info.Ended.IsZero())
		require.Empty(t, tl.Info.State, "the tombstone drops the state")
		require.Equal(t, int64(3), tl.Info.Steps)
		for id, want := range before {
			require.Equal(t, want, fx.History(orders, id), "%s is untouched", id)
			require.Positive(t, rowsOf(t, fx, "handled", id))
		}

		// Nothing more to do until the young one's time comes.
		n, err = eng.PurgeEnded(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		fx.Clock().Advance(20 * time.Minute)
		n, err = eng.PurgeEnded(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Equal(t, []string{saga.KindPurged}, kinds(fx.History(orders, "young")))
		require.Equal(t, before["running"], fx.History(orders, "running"), "a running instance is never purged, however old")
	})
}

func TestRetentionLateDuplicateStartStartsNothing(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, withRetention(retention))
		eng := fx.Engine()
		complete(fx, "1")
		started, err := fx.Store().ReadStream(ctx, "order-1", 0, 1)
		require.NoError(t, err)
		require.Len(t, started, 1)
		require.Equal(t, "order.placed", started[0].Type)
		require.True(t, claimed(t, fx, "1"), "the start claimed the id")
		fx.Clock().Advance(retention + time.Minute)
		n, err := eng.PurgeEnded(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.False(t, claimed(t, fx, "1"), "the purge deletes the claim: the tombstone stands for it")

		// The very start event, delivered again (a redelivery after the
		// dedupe record is gone), and a new start event for the same id.
		require.NoError(t, drive.Unit(ctx, fx.Store(), 0, func(ctx context.Context) error { return eng.Handle(ctx, started[0]) }))
		fx.When(placed("1", 99)).ExpectCommands()
		info := fx.Instance(orders, "1")
		require.Equal(t, saga.StatusCompleted, info.Status)
		require.Equal(t, int64(3), info.Steps, "no step ran")
		require.Empty(t, info.Timers)
		tl := fx.History(orders, "1")
		require.Equal(t, []string{saga.KindPurged, saga.KindIgnored, saga.KindIgnored}, kinds(tl))
		require.Equal(t, started[0].ID, tl.History[1].EventID)
		require.Contains(t, tl.History[1].Detail, "completed")
		require.Equal(t, 2.0, testutil.ToFloat64(eng.Metrics().Ignored.WithLabelValues(orders, "ended")))
		require.False(t, claimed(t, fx, "1"), "a start for an existing instance claims nothing")
		require.Zero(t, tableRows(t, fx, "ignored_index"), "the late messages were ignored by an instance, which purges them")

		// What the late messages wrote is purged in turn.
		require.Positive(t, rowsOf(t, fx, "handled", "1"))
		fx.Clock().Advance(retention + time.Minute)
		n, err = eng.PurgeEnded(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Zero(t, rowsOf(t, fx, "handled", "1"))
		require.Equal(t, []string{saga.KindPurged}, kinds(fx.History(orders, "1")))
		require.False(t, fx.Instance(orders, "1").Ended.IsZero(), "the end time survives purges")
	})
}

func TestRetentionPurgesLongHistoryInBatches(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, withRetention(retention))
		fx.Given(placed("1", 30))
		pings := make([]sagatest.Event, 400)
		for i := range pings {
			pings[i] = ev("1", Ping{OrderID: "1", N: i})
		}
		fx.Given(pings...)
		fx.Given(ev("1", StockReserved{OrderID: "1"}), ev("1", PaymentCharged{OrderID: "1"}))
		fx.ExpectStatus(orders, "1", saga.StatusCompleted)
		require.Greater(t, rowsOf(t, fx, "handled", "1")+rowsOf(t, fx, "history", "1"), 500, "more rows than one unit deletes")
		fx.Clock().Advance(retention + time.Minute)
		n, err := fx.Engine().PurgeEnded(ctx)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.Zero(t, rowsOf(t, fx, "handled", "1"))
		require.Equal(t, []string{saga.KindPurged}, kinds(fx.History(orders, "1")))
	})
}

func TestNegativeRetentionKeepsEverything(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, withRetention(-1))
		complete(fx, "1")
		fx.Given(ev("ghost", Ping{OrderID: "ghost"}))
		want := fx.History(orders, "1")
		handled := rowsOf(t, fx, "handled", "1")
		fx.Clock().Advance(10 * 365 * 24 * time.Hour)
		n, err := fx.Engine().PurgeEnded(context.Background())
		require.NoError(t, err)
		require.Zero(t, n)
		require.Equal(t, want, fx.History(orders, "1"))
		require.Equal(t, handled, rowsOf(t, fx, "handled", "1"))
		require.Zero(t, fx.Instance(orders, "1").Purged)
		require.True(t, claimed(t, fx, "1"))
		require.Len(t, fx.History(orders, "ghost").Ignored, 1)
		// Still indexed, so enabling retention later purges them too.
		require.Equal(t, 1, tableRows(t, fx, "ended"))
		require.Equal(t, 1, tableRows(t, fx, "ignored_index"))
	})
}

func TestRetentionSweepRunsInTheBackground(t *testing.T) {
	t.Parallel()
	fx := newFixture(t, nil, setup{config: func(c *sagatest.Config) {
		c.Engine = func(ec *saga.EngineConfig) { ec.SweepInterval = time.Millisecond }
	}})
	complete(fx, "1")
	fx.Clock().Advance(saga.DefaultRetention + time.Minute)
	eng := fx.Engine()
	require.NoError(t, eng.Start(context.Background()))
	t.Cleanup(func() { require.NoError(t, eng.Stop(context.Background())) })
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(eng.Metrics().Purged.WithLabelValues(orders, "instance")) == 1
	}, 10*time.Second, time.Millisecond, "the driver purges by itself within a sweep")
	require.Equal(t, []string{saga.KindPurged}, kinds(fx.History(orders, "1")))
}

func TestRetentionValidation(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(&memstore.Config{Registry: registry()})
	require.NoError(t, err)
	def := orderSaga(false)
	for _, tc := range []struct {
		d  time.Duration
		ok bool
	}{{0, true}, {-1, true}, {saga.MinRetention, true}, {7, false}, {time.Second, false}} {
		_, err := saga.NewEngine(&saga.EngineConfig{Store: st, Sagas: []saga.Definition{def}, Retention: tc.d, Clock: events.SystemClock{}})
		if tc.ok {
			require.NoError(t, err, "%s", tc.d)
		} else {
			require.Error(t, err, "%s", tc.d)
			require.False(t, errors.Is(err, saga.ErrNotFound))
			require.Contains(t, err.Error(), "Retention")
		}
	}
}

type refuseAll struct{}

func (refuseAll) Handles(string) bool { return false }

func TestRetentionPurgesEveryEndedStatusButNotRetryableFailures(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		fx := newFixture(t, mk, withRetention(retention))
		eng := fx.Engine()
		fx.Given(placed("declined", 30), ev("declined", StockReserved{OrderID: "declined"}),
			ev("declined", PaymentDeclined{OrderID: "declined", Reason: "no"}))
		fx.ExpectStatus(orders, "declined", saga.StatusFailed)
		fx.Given(placed("cancelled", 30))
		require.NoError(t, eng.Cancel(ctx, orders, "cancelled", "test"))
		fx.ExpectStatus(orders, "cancelled", saga.StatusCancelled)

		// A failed step waiting for Engine.Retry has not ended.
		other := newFixture(t, mk, setup{config: func(c *sagatest.Config) {
			c.Commands = refuseAll{}
			c.Engine = func(ec *saga.EngineConfig) { ec.Retention = retention }
		}})
		other.Given(placed("retryable", 30))
		other.ExpectStatus(orders, "retryable", saga.StatusFailed)
		want := other.History(orders, "retryable")

		fx.Clock().Advance(retention + time.Minute)
		other.Clock().Advance(retention + time.Minute)
		n, err := eng.PurgeEnded(ctx)
		require.NoError(t, err)
		require.Equal(t, 2, n)
		for _, id := range []string{"declined", "cancelled"} {
			require.Equal(t, []string{saga.KindPurged}, kinds(fx.History(orders, id)), id)
		}
		n, err = other.Engine().PurgeEnded(ctx)
		require.NoError(t, err)
		require.Zero(t, n)
		require.Equal(t, want, other.History(orders, "retryable"))
		require.NoError(t, other.Engine().Retry(ctx, orders, "retryable"), "still retryable")
	})
}
