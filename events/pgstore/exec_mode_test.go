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

// TestSuitesInTextExecModes runs the store and feed suites on pools that
// send statements as text, without preparing them: pgx's simple protocol
// (what a connection pooler in transaction mode without prepared
// statements asks for, through default_query_exec_mode=simple_protocol in
// the URL) and its exec mode. Event ids once went out as [16]byte, which
// pgx can only encode in binary: every append failed in these modes, and
// was retried as if its outcome were unknown.
func TestSuitesInTextExecModes(t *testing.T) {
	t.Parallel()
	for name, mode := range map[string]pgx.QueryExecMode{
		"simple_protocol": pgx.QueryExecModeSimpleProtocol,
		"exec":            pgx.QueryExecModeExec,
	} {
		store := func(t *testing.T) *pgstore.Store {
			t.Helper()
			db := pgtest.New(t, &pgtest.Config{ExecMode: mode})
			st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: eventstoretest.Registry()})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return st
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			t.Run("store", func(t *testing.T) {
				eventstoretest.Run(t, func(t *testing.T) events.Store {
					t.Helper()
					return store(t)
				})
			})
			t.Run("feed", func(t *testing.T) {
				eventstoretest.RunFeed(t, func(t *testing.T) feed.Source {
					t.Helper()
					return store(t)
				})
			})
		})
	}
}
