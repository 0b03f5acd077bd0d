package pgstore_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// A store whose role may not see when other roles' transactions began
// (pg_stat_activity's xact_start, without pg_read_all_stats) still
// reports the horizon that another role's open transaction holds, and its
// age grows while it is held.
func TestHorizonAgeSeesOtherRolesTransactions(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	role := "converge_nostats_" + strings.ToLower(strings.TrimPrefix(db.Schema, "t_"))
	role = role[:min(len(role), 63)]
	id := pgx.Identifier{role}.Sanitize()
	schema := pgx.Identifier{db.Schema}.Sanitize()
	_, err := db.Pool.Exec(ctx, fmt.Sprintf(`CREATE ROLE %s LOGIN NOSUPERUSER; GRANT USAGE ON SCHEMA %s TO %s; GRANT SELECT ON ALL TABLES IN SCHEMA %s TO %s`,
		id, schema, id, schema, id))
	require.NoError(t, err)
	t.Cleanup(func() {
		// The pool closes first (cleanups run last in, first out), so no
		// session of the role is left to refuse the drop.
		_, err := db.Pool.Exec(context.Background(), fmt.Sprintf(`DROP OWNED BY %s; DROP ROLE %s`, id, id))
		require.NoError(t, err)
	})

	pcfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	pcfg.ConnConfig.User = role
	pcfg.ConnConfig.RuntimeParams["search_path"] = db.Schema
	pcfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	st, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: db.Schema, DisableListen: true, SkipSchemaCheck: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })

	// The holder runs as the test's own (other) role.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	// Two statements: in one, the planner drops an unused subquery's
	// pg_current_xact_id() and no id is taken.
	_, err = tx.Exec(ctx, `SELECT pg_current_xact_id()`)
	require.NoError(t, err)
	var pid int32
	require.NoError(t, tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	// A transaction holds nothing back until one that began after it
	// commits: this one does, so the horizon is held from here on.
	_, err = db.Pool.Exec(ctx, `SELECT pg_current_xact_id()`)
	require.NoError(t, err)
	var hidden bool
	require.NoError(t, pool.QueryRow(ctx, `SELECT xact_start IS NULL FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&hidden))
	require.True(t, hidden, "the store's role must not see when the holder's transaction began, for this test to mean anything")

	require.Eventually(t, func() bool {
		age, err := st.HorizonAge(ctx)
		require.NoError(t, err)
		return age >= 100*time.Millisecond
	}, 15*time.Second, 20*time.Millisecond, "HorizonAge never grew while another role held the horizon")
}
