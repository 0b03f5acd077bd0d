package main

import (
	"math/rand/v2"
	"strings"
	"testing"

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
