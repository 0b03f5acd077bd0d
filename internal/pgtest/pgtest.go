package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/migrations"
)

// URL returns DATABASE_URL or fails the test.
func URL(tb testing.TB) string {
	tb.Helper()
	u := os.Getenv("DATABASE_URL")
	if u == "" {
		tb.Fatal("DATABASE_URL is not set: run ./scripts/test, or export DATABASE_URL=postgres://postgres@127.0.0.1:5432/test")
	}
	return u
}

// Config tunes a test database.
type Config struct {
	// MaxConns caps the test's pool. Defaults to 6: many tests run at once
	// against a server with 100 connections.
	MaxConns int32
	// SkipMigrate leaves the schema empty.
	SkipMigrate bool
	// ExecMode, when set, is how the pool's connections send statements
	// (pgx.QueryExecMode); zero keeps the URL's or pgx's default.
	ExecMode pgx.QueryExecMode
	// Params are run-time parameters set on each connection (such as
	// default_transaction_isolation).
	Params map[string]string
}

// DB is one test's database handle.
type DB struct {
	Pool   *pgxpool.Pool
	Schema string
	URL    string
}

// New creates a fresh schema, migrates it and returns a pool whose
// search_path is that schema. The schema is dropped when the test ends,
// or, when the process turned ReuseSchemas on and the test passed, emptied
// and handed to a later test of the process.
func New(tb testing.TB, cfg *Config) *DB {
	tb.Helper()
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.MaxConns == 0 {
		c.MaxConns = 6
	}
	url := URL(tb)
	schema, reused, keep := "t_"+randomHex(6), false, false
	if !c.SkipMigrate {
		schema, reused, keep = takeSchema(url)
	}
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatalf("parse DATABASE_URL: %v", err)
	}
	pcfg.MaxConns = c.MaxConns
	if c.ExecMode != 0 {
		pcfg.ConnConfig.DefaultQueryExecMode = c.ExecMode
	}
	// The shared server never crashes under these tests (the ones that
	// stop or kill PostgreSQL run clusters of their own), so a commit
	// need not wait for its WAL flush: on a disk that flushes slowly every
	// test's set-up (a schema and its migrations, a commit each) and every
	// commit would otherwise queue behind the others' flushes. What a
	// commit makes visible, and when, is the same either way.
	pcfg.ConnConfig.RuntimeParams["synchronous_commit"] = "off"
	// The test's name on its sessions says, in pg_stat_activity, which test
	// holds a transaction open (see logHorizonHolders).
	pcfg.ConnConfig.RuntimeParams["application_name"] = appName(tb.Name())
	for k, v := range c.Params {
		pcfg.ConnConfig.RuntimeParams[k] = v
	}
	pcfg.ConnConfig.RuntimeParams["search_path"] = schema
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, pids, err := trackedPool(ctx, pcfg)
	if err != nil {
		tb.Fatalf("connect to %s: %v", url, err)
	}
	db := &DB{Pool: pool, Schema: schema, URL: url}
	tb.Cleanup(func() {
		if tb.Failed() {
			logHorizonHolders(tb, url)
		}
		if n := awaitReleased(pool, leakWait); n > 0 {
			// pool.Close would wait for them for ever, and an open
			// transaction holds locks and the read horizon of the
			// server every other test shares.
			tb.Errorf("pgtest: %d connections of schema %s are still in use %v after the test ended "+
				"(a transaction not rolled back or committed, rows not closed, a worker not stopped); "+
				"their sessions are terminated", n, schema, leakWait)
			terminate(tb, url, pids)
		} else {
			pool.Close()
			if keep && !tb.Failed() && release(tb, url, schema) {
				return
			}
		}
		forget(schema)
		Drop(tb, url, schema)
	})
	if !c.SkipMigrate && !reused {
		if _, err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: schema}); err != nil {
			tb.Fatalf("migrate %s: %v", schema, err)
		}
		if keep {
			if err := learnFingerprint(ctx, url, schema); err != nil {
				tb.Fatalf("pgtest: read the catalog of %s: %v", schema, err)
			}
		}
	}
	return db
}

// trackedPool opens a pool that records the backend pid of each of its
// connections, so that a leak can be terminated on the server.
func trackedPool(ctx context.Context, pcfg *pgxpool.Config) (*pgxpool.Pool, *sync.Map, error) {
	pids := &sync.Map{}
	pcfg.AfterConnect = func(_ context.Context, conn *pgx.Conn) error {
		pids.Store(conn.PgConn().PID(), true)
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	return pool, pids, err
}

// leakWait is how long a test's clean-up waits for its connections to be
// released before it reports them leaked.
const leakWait = 30 * time.Second

// awaitReleased waits up to d for every connection of pool to be released
// and returns how many are still in use.
func awaitReleased(pool *pgxpool.Pool, d time.Duration) int32 {
	deadline := time.Now().Add(d)
	for {
		n := pool.Stat().AcquiredConns()
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// terminate ends the server sessions of the given backends.
func terminate(tb testing.TB, url string, pids *sync.Map) {
	tb.Helper()
	var list []int64
	pids.Range(func(k, _ any) bool {
		if pid, ok := k.(uint32); ok {
			list = append(list, int64(pid))
		}
		return true
	})
	cleanupExec(tb, url, "terminate leaked sessions", "SELECT pg_terminate_backend(pid::int) FROM unnest($1::bigint[]) AS p(pid)", list)
}

// Drop removes a schema and everything in it.
func Drop(tb testing.TB, url, schema string) {
	tb.Helper()
	cleanupExec(tb, url, "drop schema "+schema, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	schemaEnded(ctx, url)
}

// cleanupExec runs one statement of a test's clean-up on the process's
// clean-up connection (the test's pool may be closed, or stuck), failing
// the test when it cannot.
func cleanupExec(tb testing.TB, url, what, sql string, args ...any) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := withAdmin(ctx, url, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, sql, args...)
		return err
	})
	if err != nil {
		tb.Errorf("cleanup: %s: %v", what, err)
	}
}

// appName makes a test's name a valid application_name: printable ASCII,
// at most 63 bytes (the server cuts longer names), the end kept, where a
// subtest's name is.
func appName(test string) string {
	b := []byte(test)
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	if len(b) > 63 {
		b = append([]byte("..."), b[len(b)-60:]...)
	}
	return string(b)
}

// logHorizonHolders logs the server's sessions that have held a
// transaction id or a snapshot for over a second, with the test that opened
// each (application_name). The feed shows an event only once every older
// transaction of the server has ended, so a failed wait for events is often
// another test's open transaction: this names it.
func logHorizonHolders(tb testing.TB, url string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Logf("pgtest: list open transactions: %v", err)
		return
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT pid, application_name, state, now() - xact_start, backend_xid IS NOT NULL, left(query, 120)
		FROM pg_stat_activity
		WHERE pid <> pg_backend_pid() AND xact_start < now() - interval '1 second'
		  AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL)
		ORDER BY xact_start`)
	if err != nil {
		tb.Logf("pgtest: list open transactions: %v", err)
		return
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var (
			pid           int32
			app, state, q string
			age           time.Duration
			holdsID       bool
		)
		if err := rows.Scan(&pid, &app, &state, &age, &holdsID, &q); err != nil {
			tb.Logf("pgtest: list open transactions: %v", err)
			return
		}
		n++
		tb.Logf("pgtest: open transaction: pid %d, test %q, %s for %s, holds an xid: %v, query %q", pid, app, state, age.Round(time.Millisecond), holdsID, q)
	}
	if n == 0 {
		tb.Logf("pgtest: no transaction of the server was open for over a second when the test ended")
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
