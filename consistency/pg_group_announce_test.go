package consistency_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestReconnectAnnouncingAnOldRowDoesNotMoveAGroup: a read model ran
// unsplit, under its own name, then split into partitions that a reset
// took back behind that name's row, which stays in the store, no longer
// moving. When the LISTEN connection comes back the store announces every
// row again, the old one too, under the name the tracker groups the
// partitions by. A token between the partitions and the old row must
// still read stale. The fallback loop is too slow to correct it here, and
// the partitions are idle (halted, say), so no move of theirs does.
func TestReconnectAnnouncingAnOldRowDoesNotMoveAGroup(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, nil)
	web, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, ListenReconnectDelay: 50 * time.Millisecond})
	require.NoError(t, err)
	defer web.Close()
	other, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	defer other.Close()
	awaitPush(t, web, true)

	commit := func(name string, pos events.Token) {
		t.Helper()
		lease, err := other.Checkpoints().Acquire(ctx, name, "other-process", time.Minute)
		require.NoError(t, err)
		u, err := other.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, u.Commit(ctx, feed.Move{Lease: lease, Position: pos}))
	}
	old := 100 + rand.IntN(1000)
	const n = 3
	parts := make([]string, n)
	low := 0
	for i := range parts {
		parts[i] = feed.PartitionName("orders", i, n)
		p := 1 + rand.IntN(old-1)
		commit(parts[i], events.MakeToken(1, uint64(p)))
		if i == 0 || p < low {
			low = p
		}
	}
	// The rows are announced in the table's scan order, which nobody
	// controls. The old row scanned last is the case where no partition's
	// announcement comes after it to move the group back.
	commit("orders", events.MakeToken(1, uint64(old)))

	tr, err := consistency.NewTracker(&consistency.TrackerConfig{
		Positions: web.Checkpoints(), Watcher: web, PushHealthy: web.PushHealthy,
		FallbackInterval: time.Hour,
	})
	require.NoError(t, err)
	require.NoError(t, tr.Start(ctx))
	defer func() { require.NoError(t, tr.Stop(context.WithoutCancel(ctx))) }()
	tr.Group("orders", parts...)
	require.NoError(t, tr.Learn(ctx, "orders"))
	require.Equal(t, events.MakeToken(1, uint64(low)), position(t, tr, "orders"))

	var killed int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
		"converge-listen-"+db.Schema).Scan(&killed))
	require.Equal(t, 1, killed)
	awaitPush(t, web, false)
	// Healthy again only once every row has been announced.
	awaitPush(t, web, true)

	require.Equal(t, events.MakeToken(1, uint64(low)), position(t, tr, "orders"),
		"the old row under the group's name (at %d) is not the partitions' position", old)
	target := events.MakeToken(1, uint64(low+1+rand.IntN(old-low)))
	reached, behind, err := tr.WaitReached(expiredContext(t), target, "orders")
	require.NoError(t, err)
	require.False(t, reached, "a partition is at %d, before %v", low, target)
	require.Equal(t, []string{"orders"}, behind)
}
