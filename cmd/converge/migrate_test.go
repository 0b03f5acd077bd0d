package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// runCLI runs converge in-process with args and returns what it printed.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetOut(&out)
	root.SetErr(&out)
	err := execute(context.Background(), root)
	return out.String(), err
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	all, err := migrations.List()
	require.NoError(t, err)
	latest := all[len(all)-1].Version
	// The password must never be printed; trust authentication ignores it.
	u, err := url.Parse(db.URL)
	require.NoError(t, err)
	u.User = url.UserPassword(u.User.Username(), "s3cret")
	conn := []string{"--database-url", u.String(), "--schema", db.Schema}
	u.User = url.UserPassword(u.User.Username(), "xxxxx")
	u.RawQuery = ""
	header := fmt.Sprintf("database %s\nschema   %s\n", u, db.Schema)

	var pending []string
	for _, m := range all {
		pending = append(pending, fmt.Sprintf("%d %s", m.Version, m.Name))
	}
	out, err := runCLI(t, append([]string{"migrate", "--status"}, conn...)...)
	var ec interface{ ExitCode() int }
	require.ErrorAs(t, err, &ec)
	require.Equal(t, 3, ec.ExitCode(), "pending migrations fail --status with exit status 3")
	require.EqualError(t, err, fmt.Sprintf("schema %q has %d pending migration(s): run `converge migrate --schema %s` with the same database", db.Schema, latest, db.Schema))
	require.Equal(t, header+fmt.Sprintf("version  0 (latest %d)\napplied  none\npending  %s\n", latest, strings.Join(pending, ", ")), out)
	require.NotContains(t, out, "s3cret")

	out, err = runCLI(t, append([]string{"migrate"}, conn...)...)
	require.NoError(t, err)
	want := header
	for _, m := range all {
		want += fmt.Sprintf("applied  %d %s\n", m.Version, m.Name)
	}
	want += fmt.Sprintf("now at version %d (latest)\n", latest)
	require.Equal(t, want, out)

	// Again: migrate is idempotent and says so.
	out, err = runCLI(t, append([]string{"migrate"}, conn...)...)
	require.NoError(t, err)
	require.Equal(t, header+fmt.Sprintf("already at version %d (latest)\n", latest), out)

	out, err = runCLI(t, append([]string{"migrate", "--status"}, conn...)...)
	require.NoError(t, err, "nothing pending: --status succeeds")
	require.Equal(t, header+fmt.Sprintf("version  %d (latest %d)\napplied  %s\npending  none\n", latest, latest, strings.Join(pending, ", ")), out)

	v, err := migrations.Current(context.Background(), db.Pool, &migrations.Config{Schema: db.Schema})
	require.NoError(t, err)
	require.Equal(t, latest, v)
}

// TestCommandsNeedADatabaseURL: every command that uses PostgreSQL fails
// saying so when neither --database-url nor DATABASE_URL is set; the PG*
// variables alone select nothing. Every command in the tree is tried; demo
// and serve use PostgreSQL only when asked. Not parallel: it clears
// DATABASE_URL for the whole process.
func TestCommandsNeedADatabaseURL(t *testing.T) {
	t.Setenv("DATABASE_URL", "")
	t.Setenv("PGDATABASE", "postgres")
	// What each command needs besides, to get as far as the database.
	extra := map[string][]string{
		"converge bench":               {},
		"converge dead-letters list":   {},
		"converge dead-letters replay": {"p/e"},
		"converge demo":                {"--postgres"},
		"converge lag":                 {},
		"converge migrate":             {},
		"converge projections rebuild": {"p"},
		"converge projections reset":   {"p"},
		"converge projections resume":  {"p"},
		"converge projections status":  {},
		"converge sagas cancel":        {"x"},
		"converge sagas list":          {},
		"converge sagas retry":         {"x"},
		"converge sagas show":          {"x"},
		"converge serve":               {"--postgres"},
	}
	var tried [][]string
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			walk(sub)
		}
		path := c.CommandPath()
		if c.HasSubCommands() || !c.Runnable() || c.Name() == "help" || strings.HasPrefix(path, "converge completion") {
			return
		}
		more, ok := extra[path]
		require.True(t, ok, "%s: say in this test what it needs to reach the database", path)
		args := append(strings.Fields(path)[1:], more...)
		_, err := runCLI(t, args...)
		require.ErrorIs(t, err, errNoDatabaseURL, args)
		require.EqualError(t, err, "no database given: pass --database-url postgres://USER@HOST:5432/DB or set DATABASE_URL", args)
		tried = append(tried, args)
	}
	walk(newRootCmd())
	require.Len(t, tried, len(extra))

	// A --database-url given blank (an unset shell variable, say) is
	// refused as such: neither DATABASE_URL nor memory stands in for it,
	// also where the flag alone asks for PostgreSQL (demo, serve).
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/app")
	for _, args := range tried {
		blank := []string{"", " ", "\t"}[rand.IntN(3)]
		args = slices.DeleteFunc(slices.Clone(args), func(a string) bool { return a == "--postgres" })
		out, err := runCLI(t, append(args, "--database-url", blank)...)
		require.ErrorIs(t, err, errBlankDatabaseURL, "%v --database-url %q", args, blank)
		require.NotContains(t, out, "orders closed", "%v: the demo ran", args)
	}
}

func TestMaskedURL(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"postgres://bob:pw@db.example:6432/app?sslmode=disable":    "postgres://bob:xxxxx@db.example:6432/app",
		"postgres://bob@[::1]:5432/app":                            "postgres://bob@[::1]:5432/app",
		"host=/var/run/postgresql user=bob password=pw dbname=app": "postgres://bob:xxxxx@/app?host=%2Fvar%2Frun%2Fpostgresql",
	} {
		cfg, err := pgx.ParseConfig(in)
		require.NoError(t, err)
		require.Equal(t, want, maskedURL(cfg), in)
	}
}

func TestMigrateRejectsBadSchema(t *testing.T) {
	t.Parallel()
	// The schema is checked before connecting: this URL is never dialled.
	_, err := runCLI(t, "migrate", "--database-url", "postgres://nobody@127.0.0.1:1/none", "--schema", "Bad-Name")
	require.ErrorContains(t, err, `--schema: schema "Bad-Name": use 1 to 63 lower-case letters`)
}

func TestMigrateSaysWhenPostgresIsUnreachable(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback refuses at once.
	_, err := runCLI(t, "migrate", "--database-url", "postgres://nobody:secret@127.0.0.1:1/none?connect_timeout=5")
	require.ErrorContains(t, err, "connect to PostgreSQL at nobody@127.0.0.1:1/none")
	require.ErrorContains(t, err, "is PostgreSQL running? check --database-url or DATABASE_URL")
	require.NotContains(t, err.Error(), "secret")
}

func TestDatabaseURLFallsBackToEnvironment(t *testing.T) {
	t.Parallel()
	env := map[string]string{"DATABASE_URL": "postgres://from-env/db"}
	getenv := func(k string) string { return env[k] }

	require.Equal(t, "postgres://from-flag/db", databaseURL("postgres://from-flag/db", getenv))
	require.Equal(t, "postgres://from-env/db", databaseURL("", getenv))
	// Empty, which dbOptions.validate rejects.
	require.Empty(t, databaseURL("", func(string) string { return "" }))
}

func TestConnectErrorsNameTheFix(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	u, err := url.Parse(db.URL)
	require.NoError(t, err)

	missing := *u
	missing.Path = "/converge_no_such_db"
	_, err = runCLI(t, "migrate", "--database-url", missing.String())
	require.ErrorContains(t, err, "create the database with `createdb converge_no_such_db`, or fix its name in --database-url or DATABASE_URL")

	nobody := *u
	nobody.User = url.User("converge_no_such_role")
	_, err = runCLI(t, "migrate", "--database-url", nobody.String())
	require.ErrorContains(t, err, "check the user and password in --database-url or DATABASE_URL, or set PGPASSWORD")
}

func TestUsageErrorsPointAtHelp(t *testing.T) {
	t.Parallel()
	for args, want := range map[string]string{
		"nosuch":          "unknown command \"nosuch\" for \"converge\" (see `converge --help`)",
		"migrate extra":   "unknown command \"extra\" for \"converge migrate\" (see `converge migrate --help`)",
		"migrate --bogus": "unknown flag: --bogus (see `converge migrate --help`)",
	} {
		_, err := runCLI(t, strings.Fields(args)...)
		require.EqualError(t, err, want, args)
	}
}

// TestMistypedSubcommandsFail: every command that groups others refuses
// a name that is none of them, rather than printing its help and
// succeeding.
func TestMistypedSubcommandsFail(t *testing.T) {
	t.Parallel()
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if !c.HasSubCommands() {
			return
		}
		args := append(strings.Fields(c.CommandPath())[1:], "nosuch")
		out, err := runCLI(t, args...)
		require.ErrorContains(t, err, `unknown command "nosuch" for "`+c.CommandPath()+"\" (see `"+c.CommandPath()+" --help`)", args)
		require.Empty(t, out, args)
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
}

// TestMigrateRefusesASchemaAhead: a schema a newer converge migrated is
// left alone, with and without --status, and the error says to upgrade.
func TestMigrateRefusesASchemaAhead(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	latest, err := migrations.Latest()
	require.NoError(t, err)
	_, err = db.Pool.Exec(context.Background(), "UPDATE "+pgx.Identifier{db.Schema, "schema_version"}.Sanitize()+" SET version = $1", latest+1)
	require.NoError(t, err)
	for _, args := range [][]string{{"migrate"}, {"migrate", "--status"}} {
		_, err := runCLI(t, append(args, "--database-url", db.URL, "--schema", db.Schema)...)
		require.EqualError(t, err, fmt.Sprintf("schema %q is at version %d but this converge only knows up to %d: upgrade converge", db.Schema, latest+1, latest), args)
		var ec interface{ ExitCode() int }
		require.False(t, errors.As(err, &ec), "exit status 1: could not find out, not pending")
	}
	v, err := migrations.Current(context.Background(), db.Pool, &migrations.Config{Schema: db.Schema})
	require.NoError(t, err)
	require.Equal(t, latest+1, v, "untouched")
}

// TestLibpqVariablesFillInTheURL: DATABASE_URL is used when there is no
// --database-url, and the PG* variables fill in what it leaves out (here
// the user). Not parallel: it sets the process's environment.
func TestLibpqVariablesFillInTheURL(t *testing.T) {
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	u, err := url.Parse(db.URL)
	require.NoError(t, err)
	user := u.User.Username()
	require.NotEmpty(t, user, "DATABASE_URL names a user")
	u.User = nil
	t.Setenv("DATABASE_URL", u.String())
	t.Setenv("PGUSER", user)
	out, err := runCLI(t, "migrate", "--schema", db.Schema)
	require.NoError(t, err)
	u.User = url.User(user)
	u.RawQuery = ""
	require.True(t, strings.HasPrefix(out, "database "+u.String()+"\n"), out)
}
