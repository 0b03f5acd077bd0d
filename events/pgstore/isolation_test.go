package pgstore_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestNewRefusesAStricterDefaultIsolation: on connections whose
// transactions default to REPEATABLE READ or SERIALIZABLE, the store's
// own statements would fail with serialization errors where READ
// COMMITTED waits, so New refuses the pool and says how to fix it. READ
// UNCOMMITTED, which PostgreSQL runs as READ COMMITTED, is accepted.
func TestNewRefusesAStricterDefaultIsolation(t *testing.T) {
	t.Parallel()
	for level, refused := range map[string]bool{
		"repeatable read": true, "serializable": true, "read committed": false, "read uncommitted": false,
	} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t, &pgtest.Config{Params: map[string]string{"default_transaction_isolation": level}})
			st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
			if !refused {
				require.NoError(t, err)
				require.NoError(t, st.Close())
				return
			}
			require.Error(t, err)
			require.ErrorContains(t, err, "converge needs read committed")
			require.ErrorContains(t, err, "default_transaction_isolation=read%20committed")
		})
	}
}

// TestUnitsBeginReadCommitted: a unit's transaction is READ COMMITTED
// whatever the connections' default, so a read-model read through a saga
// step's unit sees what is committed when it runs, as the gate assumes,
// not a snapshot from the unit's first statement.
func TestUnitsBeginReadCommitted(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{Params: map[string]string{"default_transaction_isolation": "serializable"}})
	st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true, SkipSchemaCheck: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ctx := t.Context()
	u, err := st.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	defer func() { require.NoError(t, u.Rollback(ctx)) }()
	tx, err := pgstore.TxFromContext(u.Context(ctx))
	require.NoError(t, err)
	var level string
	require.NoError(t, tx.QueryRow(ctx, "SHOW transaction_isolation").Scan(&level))
	require.Equal(t, "read committed", level)
	require.NoError(t, db.Pool.QueryRow(ctx, "SHOW transaction_isolation").Scan(&level))
	require.Equal(t, "serializable", level, "the connections' default is left alone")
}
