package migrations_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

func TestMigrateIsIdempotentAndConcurrent(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true, MaxConns: 8})
	cfg := &migrations.Config{Schema: db.Schema}

	v, err := migrations.Current(ctx, db.Pool, cfg)
	require.NoError(t, err)
	require.Zero(t, v)

	latest, err := migrations.Latest()
	require.NoError(t, err)

	var g errgroup.Group
	for range 4 {
		g.Go(func() error {
			got, err := migrations.Migrate(ctx, db.Pool, cfg)
			if err == nil && got != latest {
				t.Errorf("migrated to %d, want %d", got, latest)
			}
			return err
		})
	}
	require.NoError(t, g.Wait())

	v, err = migrations.Migrate(ctx, db.Pool, cfg)
	require.NoError(t, err)
	require.Equal(t, latest, v)
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM "+db.Schema+".events").Scan(&n))
	require.Zero(t, n)
}

func TestMigrateRejectsBadSchema(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"Robert'); DROP TABLE x;--", "UPPER", "9lives", ""} {
		if s == "" {
			continue // empty means the default
		}
		_, err := migrations.Migrate(context.Background(), nil, &migrations.Config{Schema: s})
		require.ErrorContains(t, err, "lower-case letters", s)
	}
}
