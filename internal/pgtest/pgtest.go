package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
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
}

// DB is one test's database handle.
type DB struct {
	Pool   *pgxpool.Pool
	Schema string
	URL    string
}

// New creates a fresh schema, migrates it and returns a pool whose
// search_path is that schema. The schema is dropped when the test ends.
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
	schema := "t_" + randomHex(6)
	pcfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		tb.Fatalf("parse DATABASE_URL: %v", err)
	}
	pcfg.MaxConns = c.MaxConns
	pcfg.ConnConfig.RuntimeParams["search_path"] = schema
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		tb.Fatalf("connect to %s: %v", url, err)
	}
	db := &DB{Pool: pool, Schema: schema, URL: url}
	tb.Cleanup(func() {
		pool.Close()
		Drop(tb, url, schema)
	})
	if !c.SkipMigrate {
		if _, err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: schema}); err != nil {
			tb.Fatalf("migrate %s: %v", schema, err)
		}
	}
	return db
}

// Drop removes a schema and everything in it.
func Drop(tb testing.TB, url, schema string) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Errorf("cleanup: connect: %v", err)
		return
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		tb.Errorf("cleanup: drop schema %s: %v", schema, err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
