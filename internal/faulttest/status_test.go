package faulttest_test

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/faulttest"
	"github.com/converge-es/converge/migrations"
	"github.com/converge-es/converge/projections"
)

// statusNow is the runner's Status with a short deadline: while the
// database is down it must answer from what the consumer knows.
func statusNow(ctx context.Context, r *projections.Runner) (projections.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return r.Status(ctx, projectionName)
}

// TestStatusShowsOutage stops PostgreSQL under a running projection: its
// Status must say the consumer is degraded, since when and why, and say so
// no longer once the database is back.
func TestStatusShowsOutage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cluster := faulttest.StartCluster(t, nil)
	url, err := cluster.CreateDatabase(ctx, "converge")
	require.NoError(t, err)
	pool, err := pgxpool.New(ctx, url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = migrations.Migrate(ctx, pool, nil)
	require.NoError(t, err)
	quiet := slog.New(slog.DiscardHandler)
	store, err := pgstore.New(ctx, pool, &pgstore.Config{Registry: registry(), Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	r, err := projections.NewRunner(&projections.RunnerConfig{
		Source:       store,
		Projections:  []*projections.Projection{totals()},
		Logger:       quiet,
		CloseTimeout: 5 * time.Second,
	})
	require.NoError(t, err)
	require.NoError(t, r.Start(ctx))
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = r.Stop(sctx)
	})

	_, err = store.Append(ctx, "acct-1", events.AnyVersion, events.Event{Data: Added{Seq: 1, Account: "acct-1", Amount: 1}})
	require.NoError(t, err)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	_, err = faulttest.AwaitCheckpoints(wctx, store, store, projectionName)
	require.NoError(t, err)
	st, err := statusNow(ctx, r)
	require.NoError(t, err)
	require.Equal(t, "holding lease", st.Consumer.String())

	// The conditions below run in goroutines of their own: st is set from
	// them only once they hold (EventuallyWithT has returned by the time
	// it is read), and a timeout reports the last attempt's values.
	down := time.Now()
	require.NoError(t, cluster.Stop(ctx, faulttest.ShutdownFast))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, err := statusNow(ctx, r)
		ok := assert.Error(c, err, "Status while the database is down")
		ok = assert.True(c, got.Consumer.Degraded(), "last consumer status: %s", got.Consumer) && ok
		if ok {
			st = got
		}
	}, 30*time.Second, 50*time.Millisecond, "Status must report the outage")
	require.Equal(t, projectionName, st.Name, "a Status that failed still names the projection")
	require.False(t, st.Consumer.DegradedSince.Before(down.Add(-time.Second)), "degraded since %s, stopped at %s", st.Consumer.DegradedSince, down)
	require.Contains(t, st.Consumer.String(), "degraded since ")
	require.Error(t, st.Consumer.LastError)
	require.NotZero(t, st.Consumer.Failures)

	require.NoError(t, cluster.Start(ctx))
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got, err := statusNow(ctx, r)
		ok := assert.NoError(c, err, "Status once the database is back")
		ok = assert.False(c, got.Consumer.Degraded(), "last consumer status: %s", got.Consumer) && ok
		ok = assert.Equal(c, feed.LeaseHolding, got.Consumer.Lease, "last consumer status: %s", got.Consumer) && ok
		if ok {
			st = got
		}
	}, 60*time.Second, 50*time.Millisecond, "Status must recover with the database")
	require.NoError(t, st.Consumer.LastError)
}
