package pgstore_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// TestNewRefusesAStricterDefaultIsolation: on connections whose
// transactions default to REPEATABLE READ or SERIALIZABLE, the store's
// own statements would fail with serialization errors where READ
// COMMITTED waits, so New refuses the pool and says how to fix it. READ
// UNCOMMITTED, which PostgreSQL runs as READ COMMITTED, is accepted.
func TestNewRefusesAStricterDefaultIsolation(t *testing.T) {
	t.Parallel()
	for level, refused := range map[string]bool{
		"repeatable read": true, "serializable": true, "read committed": false, "read uncommitted": false,
	} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t, &pgtest.Config{Params: map[string]string{"default_transaction_isolation": level}})
			st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
			if !refused {
				require.NoError(t, err)
				require.NoError(t, st.Close())
				return
			}
			require.Error(t, err)
			require.ErrorContains(t, err, "converge needs read committed")
			require.ErrorContains(t, err, "default_transaction_isolation=read%20committed")
		})
	}
}

// TestUnitsBeginReadCommitted: a unit's transaction is READ COMMITTED
// whatever the connections' default, so a read-model read through a saga
// step's unit sees what is committed when it runs, as the gate assumes,
// not a snapshot from the unit's first statement.
func TestUnitsBeginReadCommitted(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{Params: map[string]string{"default_transaction_isolation": "serializable"}})
	st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true, SkipSchemaCheck: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ctx := t.Context()
	u, err := st.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	defer func() { require.NoError(t, u.Rollback(ctx)) }()
	tx, err := pgstore.TxFromContext(u.Context(ctx))
	require.NoError(t, err)
	var level string
	require.NoError(t, tx.QueryRow(ctx, "SHOW transaction_isolation").Scan(&level))
	require.Equal(t, "read committed", level)
	require.NoError(t, db.Pool.QueryRow(ctx, "SHOW transaction_isolation").Scan(&level))
	require.Equal(t, "serializable", level, "the connections' default is left alone")
}

// TestNewRefusesAClientEncodingOtherThanUTF8: the server converts text
// from the client's encoding, and pgx sends UTF-8 whatever it is, so New
// refuses connections with any other client_encoding (a few drawn at random
// from PostgreSQL's client encodings each run) and says how to fix it;
// UTF8, however spelled, is accepted, and so is SQL_ASCII, under which the
// server converts nothing. (The tests' server is UTF8.)
func TestNewRefusesAClientEncodingOtherThanUTF8(t *testing.T) {
	t.Parallel()
	others := []string{
		"LATIN1", "LATIN2", "LATIN9", "WIN1252", "WIN1251", "EUC_JP", "SJIS", "BIG5",
		"GBK", "KOI8R", "ISO_8859_5", "WIN866", "UHC", "GB18030", "EUC_KR", "LATIN10", "WIN1250",
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	rng.Shuffle(len(others), func(i, j int) { others[i], others[j] = others[j], others[i] })
	cases := map[string]bool{"UTF8": false, "utf-8": false, "Unicode": false, "SQL_ASCII": false}
	for _, enc := range others[:3] {
		cases[enc] = true
	}
	for enc, refused := range cases {
		t.Run(enc, func(t *testing.T) {
			t.Parallel()
			db := pgtest.New(t, &pgtest.Config{Params: map[string]string{"client_encoding": enc}})
			st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
			if !refused {
				require.NoError(t, err)
				defer func() { require.NoError(t, st.Close()) }()
				// What the store writes and reads back is what was given.
				payload := `{"text":"é ü 漢字 🙂"}`
				_, err := st.Append(t.Context(), "enc-1", events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(payload)}})
				require.NoError(t, err)
				got, err := st.ReadStream(t.Context(), "enc-1", 0, 1)
				require.NoError(t, err)
				require.Len(t, got, 1)
				require.JSONEq(t, payload, string(got[0].Payload))
				// And so it is for every other reader: a UTF8 connection
				// reads the stored text as it was given.
				conn, err := pgx.Connect(t.Context(), os.Getenv("DATABASE_URL"))
				require.NoError(t, err)
				defer func() { _ = conn.Close(t.Context()) }()
				var stored string
				require.NoError(t, conn.QueryRow(t.Context(), "SELECT payload::text FROM "+pgx.Identifier{db.Schema, "events"}.Sanitize()+" WHERE stream_id = 'enc-1'").Scan(&stored))
				require.JSONEq(t, payload, stored)
				return
			}
			require.Error(t, err)
			require.ErrorContains(t, err, "client_encoding")
			require.ErrorContains(t, err, "set it to UTF8")
		})
	}
}

// TestNewRefusesADatabaseThatIsNotUTF8: a database in another encoding
// (one drawn at random each run) would store converge's text converted
// and hash stream ids differently in SQL and in Go, so New refuses it and
// says how to make one that works.
func TestNewRefusesADatabaseThatIsNotUTF8(t *testing.T) {
	t.Parallel()
	encodings := []string{"LATIN1", "LATIN2", "LATIN9", "WIN1252", "WIN1251", "EUC_JP", "KOI8R", "ISO_8859_5", "WIN866", "EUC_KR"}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	enc := encodings[rand.New(rand.NewPCG(seed, 0)).IntN(len(encodings))]
	ctx := t.Context()
	admin := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	name := "converge_enc_" + strings.TrimPrefix(admin.Schema, "t_")
	_, err := admin.Pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()+" ENCODING '"+enc+"' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0")
	require.NoError(t, err)
	t.Cleanup(func() {
		_, err := admin.Pool.Exec(context.Background(), "DROP DATABASE "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)")
		require.NoError(t, err)
	})
	cfg, err := pgxpool.ParseConfig(admin.URL)
	require.NoError(t, err)
	cfg.ConnConfig.Database = name
	// Connections to such a database default to its encoding, which the
	// client_encoding check would refuse first: ask for UTF8, as a user
	// who knows pgx's text is UTF-8 would.
	cfg.ConnConfig.RuntimeParams["client_encoding"] = "UTF8"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	_, err = migrations.Migrate(ctx, pool, &migrations.Config{Schema: "converge"})
	require.NoError(t, err)
	_, err = pgstore.New(ctx, pool, &pgstore.Config{Schema: "converge", DisableListen: true})
	require.Error(t, err, "database encoding %s", enc)
	require.ErrorContains(t, err, "the database's encoding is "+enc)
	require.ErrorContains(t, err, "ENCODING 'UTF8'")
}
