// Package pgtest gives each test its own migrated PostgreSQL schema, so
// tests run in parallel against one database and clean up after themselves.
//
// Tests read DATABASE_URL (scripts/test sets it). When it is unset they fail
// with a message saying so: PostgreSQL tests never skip silently.
package pgtest
