package migrations_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/converge-es/converge/internal/pgbouncertest"
	"github.com/converge-es/converge/migrations"
)

// ternLockKey is the advisory lock key jackc/tern takes (its unexported
// lockNum). pg_locks shows a bigint key split in two: its high 32 bits as
// classid, its low 32 bits as objid, and objsubid 1.
const ternLockKey = int64(9628173550095224)

// TestMigrateBehindATransactionPooler: Migrate through PgBouncer in
// transaction mode, where each transaction (or statement outside one) may
// run on another of a few shared server sessions, brings every schema to
// the latest version, one after another and several at once, and leaves no
// advisory lock held on any server session: a lock taken on one session
// and released on another would stay held, and every later Migrate of any
// schema in the database would wait for it until its deadline.
func TestMigrateBehindATransactionPooler(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := pgbouncertest.Start(t, &pgbouncertest.Config{PoolSize: 3, RoundRobin: true})
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	latest, err := migrations.Latest()
	require.NoError(t, err)

	// What the README suggests for a transaction pooler: no prepared
	// statements.
	pooled := openPool(t, b.URL+"&default_query_exec_mode=simple_protocol", 8)
	direct := openPool(t, b.DirectURL, 4)

	// Three transactions at once make PgBouncer open its three server
	// sessions; round robin then moves one client's consecutive
	// statements between them.
	var warm errgroup.Group
	for range 3 {
		warm.Go(func() error {
			_, err := pooled.Exec(ctx, "SELECT pg_sleep(0.2)")
			return err
		})
	}
	require.NoError(t, warm.Wait())

	migrateOne := func(pool *pgxpool.Pool, schema string) error {
		mctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		v, err := migrations.Migrate(mctx, pool, &migrations.Config{Schema: schema})
		if err != nil {
			return fmt.Errorf("migrate %s: %w", schema, err)
		}
		if v != latest {
			return fmt.Errorf("migrate %s: reached version %d, want %d", schema, v, latest)
		}
		return nil
	}
	var schemas []string
	name := func() string {
		s := fmt.Sprintf("s%d_%d", len(schemas), rng.IntN(1e6))
		schemas = append(schemas, s)
		return s
	}

	sequential := 2 + rng.IntN(3)
	for range sequential {
		s := name()
		require.NoError(t, migrateOne(pooled, s))
		require.NoError(t, migrateOne(pooled, s), "again, up to date")
	}
	// Several schemas at once, some of them by two migrators.
	concurrent := 3 + rng.IntN(4)
	var g errgroup.Group
	for range concurrent {
		s := name()
		for range 1 + rng.IntN(2) {
			g.Go(func() error { return migrateOne(pooled, s) })
		}
	}
	require.NoError(t, g.Wait())
	t.Logf("%d schemas one after another, %d at once", sequential, concurrent)

	// A run that fails part way (a table 0003 creates is in the way)
	// aborts its transaction, and tern's unlock with it: the lock must
	// not stay behind on the server session either.
	broken := name()
	_, err = direct.Exec(ctx, fmt.Sprintf("CREATE SCHEMA %[1]s; CREATE TABLE %[1]s.rows ()", broken))
	require.NoError(t, err)
	err = migrateOne(pooled, broken)
	require.ErrorContains(t, err, "already exists")
	v, err := migrations.Current(ctx, direct, &migrations.Config{Schema: broken})
	require.NoError(t, err)
	require.Zero(t, v, "the failed run applied nothing")
	_, err = direct.Exec(ctx, "DROP TABLE "+broken+".rows")
	require.NoError(t, err)
	require.NoError(t, migrateOne(pooled, broken), "the obstacle gone, the next run applies everything")

	rows, err := direct.Query(ctx, `SELECT format('pid %s %s granted=%s', pid, mode, granted) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND classid::int8 = $1 AND objid::int8 = $2 AND objsubid = 1`, ternLockKey>>32, ternLockKey&0xffffffff)
	require.NoError(t, err)
	held, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.Empty(t, held, "tern's advisory lock is still held after every Migrate returned")

	for _, s := range schemas {
		v, err := migrations.Current(ctx, direct, &migrations.Config{Schema: s})
		require.NoError(t, err)
		require.Equal(t, latest, v, s)
	}
	// A migrator that bypasses the pooler is not kept waiting either.
	start := time.Now()
	require.NoError(t, migrateOne(direct, name()))
	require.Less(t, time.Since(start), 20*time.Second)

	// The key looked for above is the one tern (this module's version of
	// it) locks, and the one Migrate locks: while another session holds
	// it, tern's migrator waits.
	require.Equal(t, ternLockKey, migrations.TernLockKey)
	holder, err := direct.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = holder.Rollback(ctx) }()
	_, err = holder.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", ternLockKey)
	require.NoError(t, err)
	conn, err := direct.Acquire(ctx)
	require.NoError(t, err)
	defer conn.Release()
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	_, err = migrate.NewMigrator(wctx, conn.Conn(), name()+".schema_version")
	require.ErrorIs(t, err, context.DeadlineExceeded, "tern did not wait for the lock: its key is not %d", ternLockKey)
}

// openPool opens a pool on url, closed when the test ends.
func openPool(t *testing.T, url string, maxConns int32) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	require.NoError(t, err)
	cfg.MaxConns = maxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return pool
}
