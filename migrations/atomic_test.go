package migrations_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// TestMigrateAppliesAllOrNothing: Migrate applies the pending migrations
// in one transaction. When a later one fails (here 0003, whose table is in
// the way), the schema stays at the version it was at, without anything
// the earlier migrations of the run created, and nothing is reported;
// once the obstacle is gone, the next run applies them all.
func TestMigrateAppliesAllOrNothing(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	// 0, 1 or 2 migrations applied before; 0003 creates the rows table.
	from := rng.Int32N(3)
	s := pgx.Identifier{db.Schema}.Sanitize()
	if from > 0 {
		require.NoError(t, migrations.MigrateTo(ctx, db.Pool, &migrations.Config{Schema: db.Schema}, from))
	} else {
		_, err := db.Pool.Exec(ctx, "CREATE SCHEMA "+s)
		require.NoError(t, err)
	}
	_, err := db.Pool.Exec(ctx, "CREATE TABLE "+s+".rows (in_the_way int)")
	require.NoError(t, err)
	tables := func() []string {
		rows, err := db.Pool.Query(ctx, "SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1", db.Schema)
		require.NoError(t, err)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return names
	}
	before := tables()

	var applied []migrations.Migration
	cfg := &migrations.Config{Schema: db.Schema, OnApplied: func(m migrations.Migration) { applied = append(applied, m) }}
	_, err = migrations.Migrate(ctx, db.Pool, cfg)
	require.ErrorContains(t, err, "0003")
	require.ErrorContains(t, err, "already exists")
	require.Empty(t, applied, "a failed run reports nothing")
	v, err := migrations.Current(ctx, db.Pool, cfg)
	require.NoError(t, err)
	require.Equal(t, from, v, "the schema stays at its version")
	require.Equal(t, before, tables(), "nothing of the failed run is left")

	_, err = db.Pool.Exec(ctx, "DROP TABLE "+s+".rows")
	require.NoError(t, err)
	latest, err := migrations.Latest()
	require.NoError(t, err)
	v, err = migrations.Migrate(ctx, db.Pool, cfg)
	require.NoError(t, err)
	require.Equal(t, latest, v)
	all, err := migrations.List()
	require.NoError(t, err)
	require.Equal(t, all[from:], applied)
}

// TestConcurrentMigratorsApplyEachMigrationOnce: several Migrate calls at
// once on a fresh schema, each through a pool of its own (as separate
// processes would), all reach the latest version; the one whose run went
// first applies and reports every migration, the others nothing.
func TestConcurrentMigratorsApplyEachMigrationOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	n := 2 + rng.IntN(5)
	latest, err := migrations.Latest()
	require.NoError(t, err)
	all, err := migrations.List()
	require.NoError(t, err)

	var mu sync.Mutex
	reported := make([][]migrations.Migration, n)
	var g errgroup.Group
	for i := range n {
		pool := openPool(t, pgtest.URL(t), 1)
		g.Go(func() error {
			v, err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: db.Schema, OnApplied: func(m migrations.Migration) {
				mu.Lock()
				defer mu.Unlock()
				reported[i] = append(reported[i], m)
			}})
			if err == nil && v != latest {
				t.Errorf("migrator %d reached version %d, want %d", i, v, latest)
			}
			return err
		})
	}
	require.NoError(t, g.Wait())
	var appliers int
	for i, r := range reported {
		if len(r) > 0 {
			appliers++
			require.Equal(t, all, r, "migrator %d", i)
		}
	}
	require.Equal(t, 1, appliers, "%d migrators: %v", n, reported)
	v, err := migrations.Current(ctx, db.Pool, &migrations.Config{Schema: db.Schema})
	require.NoError(t, err)
	require.Equal(t, latest, v)
}
