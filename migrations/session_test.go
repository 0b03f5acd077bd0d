package migrations_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// TestMigrateLeavesThePoolsSessionsAlone: migrating (which applies
// migrations, each followed by tern's RESET ALL) does not undo what the
// pool sets on its connections. A pool whose server default is
// SERIALIZABLE and that sets READ COMMITTED in AfterConnect still has it
// afterwards, so the store accepts the pool it just migrated.
func TestMigrateLeavesThePoolsSessionsAlone(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	cfg, err := pgxpool.ParseConfig(pgtest.URL(t))
	require.NoError(t, err)
	cfg.MaxConns = 1 // Migrate's connection is the one the checks below get
	cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "serializable"
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "SET default_transaction_isolation = 'read committed'; SET statement_timeout = '17s'")
		return err
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	show := func(setting string) string {
		var s string
		require.NoError(t, pool.QueryRow(ctx, "SHOW "+pgx.Identifier{setting}.Sanitize()).Scan(&s))
		return s
	}
	require.Equal(t, "read committed", show("default_transaction_isolation"))

	_, err = migrations.Migrate(ctx, pool, &migrations.Config{Schema: db.Schema})
	require.NoError(t, err)
	require.Equal(t, "read committed", show("default_transaction_isolation"), "Migrate undid the pool's session settings")
	require.Equal(t, "17s", show("statement_timeout"), "Migrate undid the pool's session settings")
	st, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err, "the store refuses the pool Migrate handed back")
	require.NoError(t, st.Close())
}

// TestValidateSchemaRefusesReservedNames: names PostgreSQL keeps for
// itself (pg_ and information_schema) are refused up front, saying why,
// instead of failing in CREATE SCHEMA with a hint about privileges.
func TestValidateSchemaRefusesReservedNames(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	names := []string{"pg_", "pg_catalog", "pg_toast", "information_schema"}
	for range 20 {
		valid := []rune("abcdefghijklmnopqrstuvwxyz_0123456789")
		names = append(names, "pg_"+randomName(rng, 60, valid, valid))
	}
	for _, s := range names {
		err := migrations.ValidateSchema(s)
		require.ErrorContains(t, err, "PostgreSQL reserves it", "%q", s)
		_, merr := migrations.Migrate(context.Background(), nil, &migrations.Config{Schema: s})
		require.Equal(t, err.Error(), merr.Error(), "%q", s)
	}
	require.NoError(t, migrations.ValidateSchema("pgx_app"), "only the pg_ prefix is reserved")
	require.NoError(t, migrations.ValidateSchema("information_schema2"))
}
