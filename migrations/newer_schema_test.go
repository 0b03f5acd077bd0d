package migrations_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// TestMigrateRefusesANewerSchema: a schema a newer build migrated is
// refused by name, saying what to do, and left as it is; tern's own answer
// ("outside the valid versions") did not say.
func TestMigrateRefusesANewerSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, nil) // migrated to this build's latest
	latest, err := migrations.Latest()
	require.NoError(t, err)
	newer := latest + 1 + rand.Int32N(100)
	_, err = db.Pool.Exec(ctx, "UPDATE "+pgx.Identifier{db.Schema, "schema_version"}.Sanitize()+" SET version = $1", newer)
	require.NoError(t, err)

	_, err = migrations.Migrate(ctx, db.Pool, &migrations.Config{Schema: db.Schema})
	require.ErrorContains(t, err, "ahead of this build's")
	require.ErrorContains(t, err, "run the newer converge")
	v, err := migrations.Current(ctx, db.Pool, &migrations.Config{Schema: db.Schema})
	require.NoError(t, err)
	require.Equal(t, newer, v, "the schema was left as it is")
}
