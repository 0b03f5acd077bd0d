package migrations_test

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// validSchemaName is the rule Config.Schema documents, written out
// independently of the package's pattern: 1 to 63 lower-case letters,
// digits and underscores, not starting with a digit.
func validSchemaName(s string) bool {
	if len(s) < 1 || len(s) > 63 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r == '_':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// TestValidateSchemaOverRandomNames: ValidateSchema accepts exactly the
// names the rule allows, and Migrate and Current refuse the others with
// the same error before using the pool (nil here).
func TestValidateSchemaOverRandomNames(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	// Mostly valid characters, so that valid names of every length turn
	// up, salted with what must be refused: upper case, separators,
	// quotes, non-ASCII letters and digits, NUL.
	valid := []rune("abcdefghijklmnopqrstuvwxyz_0123456789")
	invalid := []rune("AZ-. \"'$;é٣\x00\n")
	for range 5000 {
		s := randomName(rng, 70, valid, invalid)
		if s == "" {
			continue // empty means DefaultSchema in a Config
		}
		err := migrations.ValidateSchema(s)
		if validSchemaName(s) && (strings.HasPrefix(s, "pg_") || s == "information_schema") {
			require.ErrorContains(t, err, "PostgreSQL reserves it", "%q", s)
			continue
		}
		if validSchemaName(s) {
			require.NoError(t, err, "%q", s)
			continue
		}
		require.EqualError(t, err, `schema `+strconv.Quote(s)+`: use 1 to 63 lower-case letters, digits and underscores, not starting with a digit`)
		_, merr := migrations.Migrate(context.Background(), nil, &migrations.Config{Schema: s})
		require.Equal(t, err.Error(), merr.Error(), "%q", s)
		_, cerr := migrations.Current(context.Background(), nil, &migrations.Config{Schema: s})
		require.Equal(t, err.Error(), cerr.Error(), "%q", s)
	}
}

// TestMigrateSchemasNamedByKeywords: every name ValidateSchema accepts
// works, including SQL keywords, which need quoting wherever the name is
// used. Random keywords of the server's own list, each migrated twice.
func TestMigrateSchemasNamedByKeywords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, pgtest.URL(t))
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	rows, err := pool.Query(ctx, `SELECT word FROM pg_get_keywords() WHERE catcode <> 'U' AND to_regnamespace(quote_ident(word)) IS NULL ORDER BY word`)
	require.NoError(t, err)
	keywords, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(t, err)
	require.NotEmpty(t, keywords)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	latest, err := migrations.Latest()
	require.NoError(t, err)
	for range 3 {
		schema := keywords[rng.IntN(len(keywords))]
		require.NoError(t, migrations.ValidateSchema(schema))
		t.Cleanup(func() { pgtest.Drop(t, pgtest.URL(t), schema) })
		for range 2 {
			v, err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: schema})
			require.NoError(t, err, schema)
			require.Equal(t, latest, v, schema)
		}
		v, err := migrations.Current(ctx, pool, &migrations.Config{Schema: schema})
		require.NoError(t, err, schema)
		require.Equal(t, latest, v, schema)
	}
}

// TestMigrateKeepsToItsSchema: everything Migrate creates lives in the
// configured schema, so installations can share a database. The pool's
// search_path names a decoy schema, where an unqualified CREATE would
// land; it stays empty.
func TestMigrateKeepsToItsSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	decoy := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	_, err := decoy.Pool.Exec(ctx, "CREATE SCHEMA "+pgx.Identifier{decoy.Schema}.Sanitize())
	require.NoError(t, err)
	a, b := pgtest.New(t, &pgtest.Config{SkipMigrate: true}), pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	for _, s := range []string{a.Schema, b.Schema} {
		_, err := migrations.Migrate(ctx, decoy.Pool, &migrations.Config{Schema: s})
		require.NoError(t, err)
	}
	objects := func(schema string) []string {
		rows, err := decoy.Pool.Query(ctx, `SELECT relname::text FROM pg_class WHERE relnamespace = to_regnamespace($1)
			UNION ALL SELECT proname::text FROM pg_proc WHERE pronamespace = to_regnamespace($1)
			UNION ALL SELECT typname::text FROM pg_type WHERE typnamespace = to_regnamespace($1)
			ORDER BY 1`, schema)
		require.NoError(t, err)
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return names
	}
	require.Empty(t, objects(decoy.Schema), "created outside its schema")
	require.NotEmpty(t, objects(a.Schema))
	require.Equal(t, objects(a.Schema), objects(b.Schema), "two installations side by side")
}

// TestOnAppliedAfterCommit: OnApplied reports the migrations of a run once
// the run has committed, in version order: another connection already sees
// the schema at the run's last version, as the run commits them together.
func TestOnAppliedAfterCommit(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	latest, err := migrations.Latest()
	require.NoError(t, err)
	var reported []int32
	_, err = migrations.Migrate(ctx, db.Pool, &migrations.Config{Schema: db.Schema, OnApplied: func(m migrations.Migration) {
		// Migrate holds one of the pool's connections; this takes another.
		v, err := migrations.Current(ctx, db.Pool, &migrations.Config{Schema: db.Schema})
		require.NoError(t, err)
		require.Equal(t, latest, v, "reported %s before the run committed", m.Name)
		reported = append(reported, m.Version)
	}})
	require.NoError(t, err)
	want := make([]int32, latest)
	for i := range want {
		want[i] = int32(i + 1)
	}
	require.Equal(t, want, reported)
}

// randomName is up to maxLen runes, one in 40 drawn from rare, the rest
// from common.
func randomName(rng *rand.Rand, maxLen int, common, rare []rune) string {
	name := make([]rune, rng.IntN(maxLen))
	for i := range name {
		from := common
		if rng.IntN(40) == 0 {
			from = rare
		}
		name[i] = from[rng.IntN(len(from))]
	}
	return string(name)
}
