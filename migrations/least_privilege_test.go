package migrations_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// TestMigrateAnExistingSchemaNeedsNoCreateOnTheDatabase: Migrate (and
// `converge migrate`, "creating the schema if needed") needs no CREATE
// privilege on the database when the schema exists: the least-privilege
// set-up where an administrator creates the schema for the application's
// role, which owns it, and the application migrates it. PostgreSQL checks
// CREATE on the database before IF NOT EXISTS, so Migrate must not run
// CREATE SCHEMA IF NOT EXISTS for an existing schema.
func TestMigrateAnExistingSchemaNeedsNoCreateOnTheDatabase(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	role, pool := appRole(t, db, "converge_owner_")
	// The administrator's part: the schema, owned by the application's role.
	_, err := db.Pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{db.Schema}.Sanitize()+" AUTHORIZATION "+pgx.Identifier{role}.Sanitize())
	require.NoError(t, err)

	latest, err := migrations.Latest()
	require.NoError(t, err)
	var applied int
	v, err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: db.Schema, OnApplied: func(migrations.Migration) { applied++ }})
	require.NoError(t, err, "the schema exists and the role owns it: nothing needs CREATE on the database")
	require.Equal(t, latest, v)
	require.Equal(t, int(latest), applied)
	v, err = migrations.Migrate(ctx, pool, &migrations.Config{Schema: db.Schema})
	require.NoError(t, err, "again, up to date")
	require.Equal(t, latest, v)
}

// TestMigrateAtTheLatestVersionNeedsNoDDLPrivilege: the package's advice
// is to Migrate at start-up, and Migrate is idempotent. An application
// whose role may only read and write converge's tables (the schema created
// and migrated by an administrator) must then start: the schema is at the
// latest version and Migrate, with nothing to change, must create nothing
// (neither the schema, which needs CREATE on the database, nor tern's
// version table, which needs CREATE on the schema).
func TestMigrateAtTheLatestVersionNeedsNoDDLPrivilege(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, nil) // migrated by the administrator
	role, pool := appRole(t, db, "converge_dml_")
	sch, r := pgx.Identifier{db.Schema}.Sanitize(), pgx.Identifier{role}.Sanitize()
	_, err := db.Pool.Exec(ctx, fmt.Sprintf("GRANT USAGE ON SCHEMA %s TO %s; GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %s TO %s", sch, r, sch, r))
	require.NoError(t, err)

	latest, err := migrations.Latest()
	require.NoError(t, err)
	v, err := migrations.Current(ctx, pool, &migrations.Config{Schema: db.Schema})
	require.NoError(t, err)
	require.Equal(t, latest, v, "the role reads the version: the schema is at the latest")
	v, err = migrations.Migrate(ctx, pool, &migrations.Config{Schema: db.Schema})
	require.NoError(t, err, "nothing to migrate: Migrate at start-up must not need DDL privileges")
	require.Equal(t, latest, v)
}

// appRole creates a login role without privileges, named after db's
// schema with prefix, and returns it with a pool of its connections. The
// pool closes, and the role is dropped with what it owns or was granted,
// when the test ends.
func appRole(t *testing.T, db *pgtest.DB, prefix string) (string, *pgxpool.Pool) {
	t.Helper()
	ctx := t.Context()
	role := prefix + strings.ToLower(strings.TrimPrefix(db.Schema, "t_"))
	role = role[:min(len(role), 63)]
	id := pgx.Identifier{role}.Sanitize()
	_, err := db.Pool.Exec(ctx, "CREATE ROLE "+id+" LOGIN NOSUPERUSER")
	require.NoError(t, err)
	t.Cleanup(func() {
		// The pool closes first (cleanups run last in, first out), so no
		// session of the role is left to refuse the drop. What the role
		// owns (a schema, tables it migrated) goes to the test's role,
		// which drops the schema.
		_, err := db.Pool.Exec(context.Background(), fmt.Sprintf("REASSIGN OWNED BY %s TO CURRENT_USER; DROP OWNED BY %s; DROP ROLE %s", id, id, id))
		require.NoError(t, err)
	})
	pcfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	pcfg.ConnConfig.User = role
	pcfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	return role, pool
}
