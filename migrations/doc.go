// Package migrations holds converge's versioned SQL schema, embedded in the
// binary, and applies it with jackc/tern.
//
// Every table lives in one PostgreSQL schema, "converge" unless configured
// otherwise, so several converge installations (or parallel tests) can share
// a database. Migrate is idempotent and safe to run from several processes
// at once: tern serialises runs with an advisory lock, and the schema is
// created under a lock of our own first.
//
//	err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: "orders"})
//
// The CLI equivalent is `converge migrate --schema orders`.
package migrations
