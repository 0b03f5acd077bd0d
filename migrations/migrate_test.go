package migrations_test

import (
	"context"
	"sync"
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
	// Every migration is reported applied exactly once, by whichever
	// migrator applied it, and in order.
	var (
		mu      sync.Mutex
		applied []migrations.Migration
	)
	cfg := &migrations.Config{Schema: db.Schema, OnApplied: func(m migrations.Migration) {
		mu.Lock()
		defer mu.Unlock()
		applied = append(applied, m)
	}}

	v, err := migrations.Current(ctx, db.Pool, cfg)
	require.NoError(t, err)
	require.Zero(t, v)

	latest, err := migrations.Latest()
	require.NoError(t, err)
	all, err := migrations.List()
	require.NoError(t, err)
	require.Len(t, all, int(latest))

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
	require.Equal(t, all, applied)

	v, err = migrations.Migrate(ctx, db.Pool, cfg)
	require.NoError(t, err)
	require.Equal(t, latest, v)
	require.Equal(t, all, applied, "an up-to-date schema reports nothing applied")
	var n int
	require.NoError(t, db.Pool.QueryRow(ctx, "SELECT count(*) FROM "+db.Schema+".events").Scan(&n))
	require.Zero(t, n)
}

func TestMigrateRejectsBadSchema(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"Robert'); DROP TABLE x;--", "UPPER", "9lives"} {
		_, err := migrations.Migrate(context.Background(), nil, &migrations.Config{Schema: s})
		require.ErrorContains(t, err, "lower-case letters", s)
	}
	// An empty Schema is not rejected: it means DefaultSchema, which
	// passes the same check.
	require.NoError(t, migrations.ValidateSchema(migrations.DefaultSchema))
}

func TestList(t *testing.T) {
	t.Parallel()
	all, err := migrations.List()
	require.NoError(t, err)
	require.Equal(t, migrations.Migration{Version: 1, Name: "0001_events.sql"}, all[0])
	for i, m := range all {
		require.Equal(t, int32(i+1), m.Version, m.Name)
	}
}
