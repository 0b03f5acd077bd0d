package feed_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// TestRowsForReadsThroughTheUnitOfItsStore: inside a unit of the store,
// RowsFor reads through the unit (it sees the unit's uncommitted write);
// without a unit, or inside a unit of another store, it reads the store's
// committed rows.
func TestRowsForReadsThroughTheUnitOfItsStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := memstore.New(nil)
	require.NoError(t, err)
	defer st.Close()
	other, err := memstore.New(nil)
	require.NoError(t, err)
	defer other.Close()

	held := func(s *memstore.Store) (context.Context, feed.Unit) {
		u, err := s.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, u.Rows().Put(ctx, "ns", "t", "k", json.RawMessage(`1`), events.Token{}))
		return u.Context(ctx), u
	}
	found := func(ctx context.Context) bool {
		_, ok, err := feed.RowsFor(ctx, st.Registry(), st).Get(ctx, "ns", "t", "k", feed.LockNone)
		require.NoError(t, err)
		return ok
	}

	uctx, u := held(st)
	require.True(t, found(uctx), "through the store's own unit: its write is seen")
	require.False(t, found(ctx), "without a unit: committed rows only")
	octx, ou := held(other)
	require.False(t, found(octx), "a unit of another store is not used")
	require.NoError(t, u.Rollback(ctx))
	require.NoError(t, ou.Rollback(ctx))
}
