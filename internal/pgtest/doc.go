// Package pgtest gives each test its own migrated PostgreSQL schema, so
// tests run in parallel against one database and clean up after themselves.
//
// Tests read DATABASE_URL (scripts/test sets it). When it is unset they fail
// with a message saying so: PostgreSQL tests never skip silently.
//
// A test that ends with a connection of its pool still in use (a
// transaction neither committed nor rolled back, say, after a failed
// require) fails with a message saying so, after 30 seconds of grace, and
// its sessions are terminated: otherwise closing the pool would wait for
// ever, and the open transaction would hold locks and the read horizon of
// the server that every other test shares.
//
// A test process that calls ReuseSchemas hands the schema of a test that
// passed, emptied, to its next test, when its catalog is still what
// migration made. Clean-up statements reuse a few connections per process,
// and every few dozen schemas the catalogs that schema changes leave dead
// rows in are vacuumed. All three save the server work: on a two-core
// machine a new session cost about 50 ms of CPU, a migration about 100 ms
// under a database-wide lock, and a server without autovacuum collected
// dead catalog rows that every new session scanned past.
package pgtest
