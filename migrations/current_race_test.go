package migrations_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// migrateAfterVersionRead plays another process's migrator: after the
// first query that names schema_version, that migrator runs (and commits)
// before the query's result returns to its caller.
type migrateAfterVersionRead struct {
	once    sync.Once
	migrate func()
}

type sqlKey struct{}

func (m *migrateAfterVersionRead) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	return context.WithValue(ctx, sqlKey{}, d.SQL)
}

func (m *migrateAfterVersionRead) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryEndData) {
	sql, _ := ctx.Value(sqlKey{}).(string)
	if strings.Contains(sql, "schema_version") {
		m.once.Do(m.migrate)
	}
}

// TestCurrentWhileAnotherProcessMigrates: Current (which `converge
// migrate`, its --status and pgstore.New call first) asked while another
// process's Migrate commits reports a version, 0 or the latest. It read
// the table first and the catalog after a failure, and failed when the
// table appeared in between: `converge migrate` run from several
// processes at once, documented as safe, exited 1 now and then.
func TestCurrentWhileAnotherProcessMigrates(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	cfg := &migrations.Config{Schema: db.Schema}

	tracer := &migrateAfterVersionRead{migrate: func() {
		_, err := migrations.Migrate(ctx, db.Pool, cfg)
		require.NoError(t, err)
	}}
	pcfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	pcfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	defer pool.Close()

	v, err := migrations.Current(ctx, pool, cfg)
	require.NoError(t, err, "Current failed while another process migrated")
	latest, err := migrations.Latest()
	require.NoError(t, err)
	require.Contains(t, []int32{0, latest}, v)
	v, err = migrations.Current(ctx, pool, cfg)
	require.NoError(t, err)
	require.Equal(t, latest, v, "the other process migrated")
}
