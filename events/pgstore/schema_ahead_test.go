package pgstore_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// TestNewRefusesASchemaAhead: a store does not start on a schema a newer
// converge migrated past this build: a later migration may have changed
// what this build writes to, so its appends could fail or go astray.
func TestNewRefusesASchemaAhead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, nil)
	latest, err := migrations.Latest()
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, "UPDATE "+pgx.Identifier{db.Schema, "schema_version"}.Sanitize()+" SET version = $1", latest+1)
	require.NoError(t, err)
	_, err = pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema})
	require.ErrorContains(t, err, "ahead of this build")
}
