package main

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"
)

// TestDatabaseMustBeNamed: a blank database URL is no URL, and a URL or
// key=value string that leaves the database out is refused before any
// connection: either would reach whatever database libpq's defaults
// (PGDATABASE, the user's name) select. Whitespace around a good URL is
// harmless.
func TestDatabaseMustBeNamed(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	space := func() string {
		const ws = " \t\n\r"
		var b strings.Builder
		for range rng.IntN(4) {
			b.WriteByte(ws[rng.IntN(len(ws))])
		}
		return b.String()
	}
	for range 50 {
		blank := space() + " "
		err := (&dbOptions{URL: blank}).validate()
		require.ErrorIs(t, err, errNoDatabaseURL, "%q", blank)
		for _, nameless := range []string{
			"postgres://nobody@127.0.0.1:5432", "postgresql://nobody@127.0.0.1:5432/", "postgres://127.0.0.1/?sslmode=disable",
			"host=127.0.0.1 user=nobody", "host=/tmp port=5432",
		} {
			err := (&dbOptions{URL: space() + nameless + space()}).validate()
			require.ErrorIs(t, err, errNoDatabaseName, "%q", nameless)
		}
		for _, named := range []string{
			"postgres://nobody@127.0.0.1:5432/app", "postgresql://127.0.0.1/app?sslmode=disable",
			"postgres://127.0.0.1/?dbname=app", "host=/tmp dbname=app", "dbname=app",
		} {
			o := &dbOptions{URL: space() + named + space()}
			require.NoError(t, o.validate(), "%q", named)
			require.Equal(t, named, o.URL, "surrounding whitespace is dropped")
		}
	}
	// Through the CLI, from DATABASE_URL too.
	t.Setenv("DATABASE_URL", " ")
	_, err := runCLI(t, "migrate", "--status")
	require.ErrorIs(t, err, errNoDatabaseURL)
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1")
	_, err = runCLI(t, "sagas", "list")
	require.ErrorIs(t, err, errNoDatabaseName)
}

// TestEmptyDatabaseNameRefused: a database name that pgx reads as empty
// (an empty dbname, quoted or not, in any spacing libpq allows, also
// after an earlier name, or ?dbname= after a URL's path) names no
// database: the server would pick the one named after the user.
// PGDATABASE does not fill it in either. A name that is not empty,
// however it is quoted, is taken as pgx reads it.
func TestEmptyDatabaseNameRefused(t *testing.T) {
	t.Setenv("PGDATABASE", "fallback")
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 6))
	space := func() string {
		const ws = " \t\n\r"
		var b strings.Builder
		for range rng.IntN(3) {
			b.WriteByte(ws[rng.IntN(len(ws))])
		}
		return b.String()
	}
	others := func() string {
		var b strings.Builder
		for _, kv := range []string{"host=/tmp", "user=nobody", "sslmode=disable", "application_name='a b'"} {
			if rng.IntN(2) == 0 {
				b.WriteString(kv + " " + space())
			}
		}
		return b.String()
	}
	// quote writes a value as libpq reads it: in single quotes with
	// backslash escapes, or bare when it needs neither (and is not empty).
	quote := func(v string) string {
		if v != "" && !strings.ContainsAny(v, " \t\n\r'\\") && rng.IntN(2) == 0 {
			return v
		}
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	setting := func(v string) string { return "dbname" + space() + "=" + space() + quote(v) }
	for range 200 {
		// An earlier name does not count: the last setting wins.
		before := ""
		if rng.IntN(3) == 0 {
			before = setting("app") + " "
		}
		empty := others() + before + setting("") + " " + space() + others()
		if rng.IntN(4) == 0 {
			empty = others() + before + "dbname" + space() + "=" // unquoted, at the end
		}
		require.ErrorIs(t, (&dbOptions{URL: empty}).validate(), errNoDatabaseName, "%q", empty)

		var name strings.Builder
		for range 1 + rng.IntN(8) {
			name.WriteByte(byte(' ' + rng.IntN('~'-' '+1)))
		}
		named := others() + setting("") + " " + setting(name.String()) + " " + others()
		require.NoError(t, (&dbOptions{URL: named}).validate(), "%q", named)
		cfg, err := pgconn.ParseConfig(named)
		require.NoError(t, err)
		require.Equal(t, name.String(), cfg.Database, "%q", named)
	}
	// Double quotes are no quotes to libpq: that database is named "".
	require.NoError(t, (&dbOptions{URL: `dbname=""`}).validate())
	for _, empty := range []string{
		"postgres://nobody@127.0.0.1/app?dbname=", "postgres://127.0.0.1/app?dbname=app&dbname=",
	} {
		require.ErrorIs(t, (&dbOptions{URL: empty}).validate(), errNoDatabaseName, empty)
	}
	t.Setenv("DATABASE_URL", "host=127.0.0.1 port=1 dbname=''")
	_, err := runCLI(t, "sagas", "list")
	require.ErrorIs(t, err, errNoDatabaseName)
}

// TestDatabaseURLFormComesFirst: a URL of another database, upper case
// in the scheme, or text pgx cannot parse is refused for what it is,
// saying what a URL looks like, rather than as a URL that "names no
// database" (it was checked first, and sent people adding a database to
// a mysql:// URL). Its password is never repeated.
func TestDatabaseURLFormComesFirst(t *testing.T) {
	t.Parallel()
	const secret = "s3cret"
	for in, why := range map[string]string{
		"mysql://x:" + secret + "@y/z":                    "its scheme is mysql://, and converge works on PostgreSQL only",
		"http://x:" + secret + "@y:5432/z":                "its scheme is http://",
		"POSTGRES://x:" + secret + "@y/z":                 "write its scheme, POSTGRES://, in lower case",
		"Postgresql://x:" + secret + "@y/z":               "write its scheme, Postgresql://, in lower case",
		"garbage":                                         "neither a postgres:// URL nor key=value settings",
		secret:                                            "neither a postgres:// URL nor key=value settings",
		"jdbc:postgresql://y/z":                           "neither a postgres:// URL nor key=value settings",
		"x:" + secret + "@y:5432/z":                       "neither a postgres:// URL nor key=value settings",
		"postgres://x:" + secret + "@y:port/z":            "invalid port",
		"postgres://x:" + secret + "@[::1/z":              "IPv6",
		"postgres://x:" + secret + "@y/z?sslmode=nope":    "sslmode is invalid",
		"host=y password=" + secret + " dbname=z sslmode": "invalid keyword/value",
		"postgres:/z?password=" + secret + "&dbname=z":    "the // after postgres: is missing",
		"postgres:" + secret + "@y/z":                     "the // after postgres: is missing",
		"host=y:" + secret + " dbname":                    "invalid keyword/value",
	} {
		err := (&dbOptions{URL: in}).validate()
		require.ErrorIs(t, err, errBadDatabaseURL, in)
		require.NotErrorIs(t, err, errNoDatabaseName, in)
		require.ErrorContains(t, err, why, in)
		require.ErrorContains(t, err, "use postgres://USER@HOST:5432/DB (or postgresql://), or key=value settings such as host=HOST user=USER dbname=DB", in)
		require.NotContains(t, err.Error(), secret, in)

		out, err := runCLI(t, "migrate", "--database-url", in)
		require.ErrorIs(t, err, errBadDatabaseURL, in)
		require.NotContains(t, err.Error()+out, secret, in)
	}
	// What pgx reads stays accepted, and a URL without a database is still
	// told to name one.
	for _, ok := range []string{
		"postgres://x:" + secret + "@y:5432/z", "postgresql://y/z?sslmode=disable", "postgres:///z",
		"host=/tmp dbname=z", "dbname=z", "  postgres://y/z  ", "user=x password='a b' dbname=z",
	} {
		require.NoError(t, (&dbOptions{URL: ok}).validate(), ok)
	}
	require.ErrorIs(t, (&dbOptions{URL: "postgres://x:" + secret + "@y:5432"}).validate(), errNoDatabaseName)
}
