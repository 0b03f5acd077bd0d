package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// TestUpgradeDropsOldProjectionTables upgrades a database that projections
// used under migration 0002 (tables, rows, a live and a rebuild checkpoint)
// and checks that 0004 removes them, keeps every other checkpoint, and
// leaves the rows table the projections use now.
func TestUpgradeDropsOldProjectionTables(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	cfg := &migrations.Config{Schema: db.Schema}
	require.NoError(t, migrations.MigrateTo(ctx, db.Pool, cfg, 3))

	exec := func(sql string) {
		t.Helper()
		_, err := db.Pool.Exec(ctx, sql)
		require.NoError(t, err, sql)
	}
	s := db.Schema
	exec(`INSERT INTO ` + s + `.projections (name, class, active_generation, building_generation) VALUES ('order_summary', 'eventual', 1, 2)`)
	exec(`INSERT INTO ` + s + `.projection_generations (projection, generation) VALUES ('order_summary', 1), ('order_summary', 2)`)
	exec(`INSERT INTO ` + s + `.read_models (projection, generation, tbl, key, value, major, minor) VALUES ('order_summary', 1, 'orders', 'o-1', '{}', 1, 1)`)
	exec(`INSERT INTO ` + s + `.checkpoints (name) VALUES ('order_summary'), ('order_summary@rebuild-2'), ('payments'), ('order_summary_v2')`)

	v, err := migrations.Migrate(ctx, db.Pool, cfg)
	require.NoError(t, err)
	require.EqualValues(t, 4, v)

	for _, table := range []string{"projections", "projection_generations", "projection_halts", "read_models", "inline_applied", "dead_letters"} {
		var exists bool
		require.NoError(t, db.Pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s+"."+table).Scan(&exists))
		require.False(t, exists, table)
	}
	var rowsTable bool
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s+".rows").Scan(&rowsTable))
	require.True(t, rowsTable)

	rows, err := db.Pool.Query(ctx, "SELECT name FROM "+s+".checkpoints ORDER BY name")
	require.NoError(t, err)
	var names []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		names = append(names, n)
	}
	require.NoError(t, rows.Err())
	require.Equal(t, []string{"order_summary_v2", "payments"}, names, "only the old projections' checkpoints go")

	v, err = migrations.Migrate(ctx, db.Pool, cfg)
	require.NoError(t, err)
	require.EqualValues(t, 4, v, "idempotent")
}
