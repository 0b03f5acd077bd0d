package pgstore_test

import (
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/eventstoretest"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestSuitesOnTheSimpleProtocol runs the store and feed suites on a pool
// that sends statements as text, unprepared: pgx's simple protocol, what a
// connection pooler in transaction mode without prepared statements asks
// for (default_query_exec_mode=simple_protocol in the URL). Event ids once
// went out as [16]byte, which pgx can only encode in binary: every append
// failed in this mode (and in the exec mode, which also sends text), and
// was retried as if its outcome were unknown.
func TestSuitesOnTheSimpleProtocol(t *testing.T) {
	t.Parallel()
	store := func(t *testing.T) *pgstore.Store {
		t.Helper()
		db := pgtest.New(t, &pgtest.Config{ExecMode: pgx.QueryExecModeSimpleProtocol})
		st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: eventstoretest.Registry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
	t.Run("store", func(t *testing.T) {
		t.Parallel()
		eventstoretest.Run(t, func(t *testing.T) events.Store {
			t.Helper()
			return store(t)
		})
	})
	t.Run("feed", func(t *testing.T) {
		t.Parallel()
		eventstoretest.RunFeed(t, func(t *testing.T) feed.Source {
			t.Helper()
			return store(t)
		})
	})
}
