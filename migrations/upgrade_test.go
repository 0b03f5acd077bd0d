package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
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

	require.NoError(t, migrations.MigrateTo(ctx, db.Pool, cfg, 4))

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

	require.NoError(t, migrations.MigrateTo(ctx, db.Pool, cfg, 4), "idempotent")
}

// TestUpgradeDropsStreamHeads upgrades a database whose appends moved a
// head row per stream (before migration 0005): the table goes, and appends
// carry on each stream from its newest event, with the sort_key raised to
// that event's, as the head row would have given.
func TestUpgradeDropsStreamHeads(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	cfg := &migrations.Config{Schema: db.Schema}
	require.NoError(t, migrations.MigrateTo(ctx, db.Pool, cfg, 4))
	s := db.Schema
	// Two events as the old statement stored them, the second raised to a
	// sort_key far above any transaction id this test will get.
	const raised = int64(1) << 40
	_, err := db.Pool.Exec(ctx, `INSERT INTO `+s+`.streams (stream_id, version, sort_key) VALUES ('order-1', 2, $1)`, raised)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `INSERT INTO `+s+`.events (sort_key, event_id, stream_id, version, type, payload, category)
VALUES (5, gen_random_uuid(), 'order-1', 1, 't', '{}', 'order'), ($1, gen_random_uuid(), 'order-1', 2, 't', '{}', 'order')`, raised)
	require.NoError(t, err)

	v, err := migrations.Migrate(ctx, db.Pool, cfg)
	require.NoError(t, err)
	require.EqualValues(t, 5, v)
	var exists bool
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", s+".streams").Scan(&exists))
	require.False(t, exists)

	st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: s, DisableListen: true})
	require.NoError(t, err)
	defer st.Close()
	ver, err := st.StreamVersion(ctx, "order-1")
	require.NoError(t, err)
	require.Equal(t, int64(2), ver)
	res, err := st.Append(ctx, "order-1", events.Exactly(2), events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
	require.NoError(t, err)
	require.Equal(t, int64(3), res.FirstVersion)
	require.Equal(t, uint64(raised), res.Token.Major(), "the new event is raised to its predecessor's sort_key")
}
