// Package pgbouncertest starts a real PgBouncer (Debian's pgbouncer
// package, which ./scripts/test installs when it is missing) in
// transaction pooling mode in front of a throw-away database, for tests of
// what converge does behind a transaction pooler: each transaction, or
// each statement outside one, may run on another server session, and a
// few server sessions are shared by all the clients. Session state (a
// session advisory lock, a SET, a prepared statement) does not follow the
// client from one transaction to the next.
//
// A missing pgbouncer binary fails the test with what to install: these
// tests never skip. PgBouncer refuses to run as root; as root it is started
// with -u nobody (it reads its configuration before switching).
//
// Start returns the URL through PgBouncer (add
// default_query_exec_mode=simple_protocol, as a transaction pooler needs)
// and DirectURL, the same database without it; migrations' pooler test
// shows both in use.
package pgbouncertest
