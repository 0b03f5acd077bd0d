package pgstore

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// TestListenAppNameIsWhatPostgreSQLKeeps: the listener's application_name
// is how other processes' notifiers learn that someone listens on the
// schema (they look it up by equality). Every schema name migrations
// accept (up to 63 bytes) gives a name PostgreSQL keeps whole, and two
// schemas sharing a long prefix give two names.
func TestListenAppNameIsWhatPostgreSQLKeeps(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	letters := "abcdefghijklmnopqrstuvwxyz0123456789_"
	name := func(n int) string {
		var b strings.Builder
		b.WriteByte('s')
		for b.Len() < n {
			b.WriteByte(letters[r.IntN(len(letters))])
		}
		return b.String()
	}
	cfg, err := pgx.ParseConfig(pgtest.URL(t))
	require.NoError(t, err)
	seen := map[string]string{}
	for range 40 {
		schema := name(1 + r.IntN(63))
		twin := schema[:len(schema)-1] + "x" // the same prefix
		if twin == schema {
			twin = schema[:len(schema)-1] + "y"
		}
		for _, s := range []string{schema, twin} {
			app := listenAppName(s)
			require.LessOrEqual(t, len(app), 63, "seed %d: %q", seed, s)
			if other, ok := seen[app]; ok && other != s {
				t.Fatalf("seed %d: schemas %q and %q share the listener name %q", seed, other, s, app)
			}
			seen[app] = s
		}
	}
	// What the server stores is the name itself, however long the schema.
	long := name(63)
	cc := cfg.Copy()
	cc.RuntimeParams["application_name"] = listenAppName(long)
	conn, err := pgx.ConnectConfig(context.Background(), cc)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	var stored string
	require.NoError(t, conn.QueryRow(context.Background(), "SELECT current_setting('application_name')").Scan(&stored))
	require.Equal(t, listenAppName(long), stored)
}

// TestNotifierFindsAListenerOnALongSchema: with two stores on a schema
// whose name is 63 bytes long, each store's notifier finds the other's
// listener, so its NOTIFYs are sent rather than held for nobody.
func TestNotifierFindsAListenerOnALongSchema(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	schema := db.Schema + "_" + strings.Repeat("s", 62-len(db.Schema))
	require.Len(t, schema, 63)
	require.NoError(t, migrations.ValidateSchema(schema))
	_, err := migrations.Migrate(ctx, db.Pool, &migrations.Config{Schema: schema})
	require.NoError(t, err)
	t.Cleanup(func() { pgtest.Drop(t, db.URL, schema) })
	open := func() *Store {
		st, err := New(ctx, db.Pool, &Config{Schema: schema})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		require.NoError(t, st.WaitPushHealthy(wctx, true))
		return st
	}
	a, b := open(), open()
	for _, st := range []*Store{a, b} {
		st.notifier.countListeners(ctx)
		require.True(t, st.notifier.others.Load(), "a notifier does not see the other store's listener")
	}
}
