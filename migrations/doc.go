// Package migrations holds converge's versioned SQL schema, embedded in the
// binary, and applies it with jackc/tern.
//
// Every table lives in one PostgreSQL schema, "converge" unless configured
// otherwise, so several converge installations (or parallel tests) can share
// a database. Migrate first checks that the server is PostgreSQL 13 or later
// (CheckServer), so an older one is refused by name before anything
// changes, and reads the schema's version: a schema already at the latest
// one needs nothing else, no lock included.
//
// Otherwise Migrate applies what is pending in one transaction: it creates
// the schema if missing, has tern apply every pending migration and record
// the version reached, and commits once, so a run applies all of its
// migrations or, when one fails, none (the schema stays at the version it
// was at). Migrate is idempotent and safe to run from several processes at
// once: the transaction first takes an advisory transaction lock on tern's
// own key, which every migrator of the database waits for; the next one
// then finds the schema at the new version and applies nothing.
//
// It also works behind a connection pooler in transaction mode, such as
// PgBouncer's pool_mode=transaction, where each transaction, or each
// statement outside one, may run on another server session. tern on its
// own takes a session advisory lock and releases it in separate statements
// outside any transaction; behind such a pooler the release can reach
// another session than the lock, which then stays held, and every later
// Migrate in the database waits for it until its deadline. Inside the
// run's one transaction the pooler keeps every statement on one server
// session, tern's lock and release included, and the transaction lock ends
// with the transaction.
//
// Migrate at start-up, before opening the stores (ExampleMigrate runs
// this):
//
//	version, err := migrations.Migrate(ctx, pool, &migrations.Config{
//		Schema: "orders",
//		OnApplied: func(m migrations.Migration) {
//			log.Printf("applied migration %d (%s)", m.Version, m.Name)
//		},
//	})
//	if err != nil {
//		return err
//	}
//	log.Printf("schema orders at version %d", version)
//
// # Privileges
//
// What Migrate needs of its role depends on what there is to do:
//
//   - A schema already at the latest version (every start-up but the
//     first after an upgrade) needs only reading its version table: USAGE
//     on the schema and SELECT on schema_version. Migrate reads the
//     version first and returns without creating or locking anything, so a
//     least-privilege application role that may only use converge's
//     tables can call it at start-up.
//   - A schema that exists but is behind (or empty) needs CREATE on it and
//     ownership of converge's tables, as the migrations create and alter
//     them: the role that owns the schema, say one an administrator
//     created with CREATE SCHEMA ... AUTHORIZATION. CREATE on the database
//     is not needed: Migrate only creates a schema that pg_namespace does
//     not have.
//   - A schema that does not exist yet needs CREATE on the database.
//
// Current reports the version a schema is at without changing it, and List
// and Latest what this build carries; a deployment can compare them to
// refuse to start against a schema that is behind.
//
// The CLI equivalents are `converge migrate --schema orders` and
// `converge migrate --status --schema orders`, which exits with status 3
// when migrations are pending.
package migrations
