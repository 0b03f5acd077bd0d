package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed *.sql
var files embed.FS

// DefaultSchema is the schema converge's tables live in by default.
const DefaultSchema = "converge"

// ternLockKey is the advisory lock key jackc/tern v2 serialises its runs
// with (its unexported lockNum). Migrate takes it as a transaction lock, so
// that a converge built with the old session lock, or tern's own command
// line tool, waits for this one and the other way round.
const ternLockKey = int64(9628173550095224)

// schemaLockKey is the lock older converge builds took around CREATE
// SCHEMA, in a transaction of its own before tern's lock. Migrate still
// takes it, inside its run, before creating a schema, so that one of them
// creating the same schema at the same moment waits instead of failing on
// the catalog's unique index.
const schemaLockKey = int64(0x636f6e7665726765) // "converge"

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Config says where to migrate.
type Config struct {
	// Schema is the PostgreSQL schema to create the tables in. Lower-case
	// letters, digits and underscores, not one PostgreSQL reserves
	// ("pg_..." and information_schema). Defaults to DefaultSchema.
	Schema string
	// OnApplied, when set, is called by Migrate for each migration it
	// applied, in version order, once the run has committed: a run
	// applies every pending migration in one transaction, so they commit
	// together (and another connection sees the schema at the run's last
	// version when the first call is made). A run that fails applies
	// nothing and reports nothing; a migration that another process
	// applied concurrently is not reported. Defaults to nil: no calls.
	OnApplied func(m Migration)
}

// Migration is one embedded migration.
type Migration struct {
	// Version is the schema version the migration brings the schema to,
	// its file's number (1 for 0001_events.sql).
	Version int32
	// Name is its file's name, e.g. "0001_events.sql".
	Name string
}

func (c *Config) withDefaults() Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.Schema == "" {
		out.Schema = DefaultSchema
	}
	return out
}

// ValidateSchema checks that a schema name is one converge accepts.
func ValidateSchema(s string) error {
	if !schemaName.MatchString(s) {
		return fmt.Errorf("schema %q: use 1 to 63 lower-case letters, digits and underscores, not starting with a digit", s)
	}
	if strings.HasPrefix(s, "pg_") || s == "information_schema" {
		// CREATE SCHEMA refuses pg_ names, and information_schema is the
		// server's own: checked here, the error says why before any SQL.
		return fmt.Errorf("schema %q: PostgreSQL reserves it (names starting with pg_, and information_schema); choose another", s)
	}
	return nil
}

// Migrate brings the schema up to the newest version. It returns the version
// reached.
func Migrate(ctx context.Context, pool *pgxpool.Pool, cfg *Config) (int32, error) {
	c := cfg.withDefaults()
	if err := ValidateSchema(c.Schema); err != nil {
		return 0, err
	}
	pooled, err := pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: connect: %w", err)
	}
	// The connection is closed afterwards, never handed back to the pool:
	// tern runs RESET ALL after each migration it applies, which undoes
	// what the pool set on the session (AfterConnect's isolation level,
	// statement_timeout, search_path), and a run interrupted at the wrong
	// moment (a cancelled ctx) could leave tern's session lock held on a
	// direct connection; closing it ends the session and the lock. The
	// pool opens a fresh connection, through AfterConnect, when it needs
	// one.
	conn := pooled.Hijack()
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	return migrateConn(ctx, conn, c.Schema, c.OnApplied)
}

func migrateConn(ctx context.Context, conn *pgx.Conn, schema string, onApplied func(Migration)) (int32, error) {
	if err := CheckServer(ctx, conn); err != nil {
		return 0, fmt.Errorf("migrate: %w", err)
	}
	// An up-to-date schema (every start-up but the first after an
	// upgrade) needs nothing created: reading its version first lets a
	// role that may only use converge's tables call Migrate, and takes no
	// lock.
	have, found, err := readVersion(ctx, conn, schema)
	if err != nil {
		return 0, err
	}
	latest, err := Latest()
	if err != nil {
		return 0, err
	}
	if found && have > latest {
		return have, errNewerSchema(schema, have, latest)
	}
	if found && have == latest {
		return have, nil
	}
	// tern says when each migration starts; in the one transaction they
	// all commit together, so they are reported once it has.
	var applied []Migration
	v, err := inRun(ctx, conn, schema, func(m *migrate.Migrator) (int32, error) {
		// tern's own answer to a newer schema ("outside the valid
		// versions") does not say what to do.
		have, err := m.GetCurrentVersion(ctx)
		if err != nil {
			return 0, fmt.Errorf("migrate: read schema version of %q: %w", schema, err)
		}
		if want := int32(len(m.Migrations)); have > want {
			return have, errNewerSchema(schema, have, want)
		}
		m.OnStart = func(version int32, name, _, _ string) {
			applied = append(applied, Migration{Version: version, Name: name})
		}
		if err := m.Migrate(ctx); err != nil {
			return 0, fmt.Errorf("migrate schema %q: %w", schema, err)
		}
		return m.GetCurrentVersion(ctx)
	})
	if err != nil {
		return v, err
	}
	if onApplied != nil {
		for _, a := range applied {
			onApplied(a)
		}
	}
	return v, nil
}

// inRun runs fn, with a migrator for schema, in one transaction on conn,
// the whole run serialised with every other migrator of the database by
// tern's lock key, and commits it; on any error it rolls back, so the run
// applies all its migrations or none.
//
// tern itself takes a session advisory lock, and releases it, each in a
// statement of its own outside any transaction, and runs each migration
// in a transaction of its own. Behind a pooler in transaction mode
// (PgBouncer's pool_mode=transaction) every one of those may run on
// another server session: the lock stays held on the session it was taken
// on, and every later migrator of the database, of any schema, waits for
// it for ever. Inside one transaction the pooler keeps the client on one
// server session until COMMIT or ROLLBACK, so tern's lock and unlock land
// on the same session and the lock is gone before the transaction ends;
// the transaction lock taken first keeps other migrators (and older builds
// taking tern's session lock) out until COMMIT, after which they see the
// version this run reached and apply nothing. Advisory locks are
// re-entrant within a session, whether taken as session or transaction
// locks, so tern's own lock is granted at once.
func inRun(ctx context.Context, conn *pgx.Conn, schema string, fn func(m *migrate.Migrator) (int32, error)) (int32, error) {
	// Read committed whatever the session's default (a pool's AfterConnect
	// may set another): each statement after the lock then sees what the
	// migrator that held it before committed.
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return 0, fmt.Errorf("migrate: begin: %w", err)
	}
	committed := false
	defer func() {
		if !committed {
			abort(ctx, tx)
		}
	}()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", ternLockKey); err != nil {
		return 0, fmt.Errorf("migrate: lock: %w", err)
	}
	// A failed statement aborts the transaction, and tern's unlock after
	// it fails too: abort rolls back to here to release tern's lock in
	// the same transaction, so on the same server session.
	if _, err := tx.Exec(ctx, "SAVEPOINT "+runSavepoint); err != nil {
		return 0, fmt.Errorf("migrate: savepoint: %w", err)
	}
	if err := createSchema(ctx, tx, schema); err != nil {
		return 0, err
	}
	m, err := newMigrator(ctx, conn, schema)
	if err != nil {
		return 0, err
	}
	v, err := fn(m)
	if err != nil {
		return v, err
	}
	if err := tx.Commit(ctx); err != nil {
		return 0, fmt.Errorf("migrate schema %q: commit: %w", schema, err)
	}
	committed = true
	return v, nil
}

// runSavepoint is the savepoint inRun sets after taking its lock.
const runSavepoint = "converge_migrate"

// abort rolls a failed run back, first releasing tern's session lock if
// the failure left it held. It runs on a cancelled ctx too, for a while: a
// connection cut off mid-statement fails at once, and is closed after.
func abort(ctx context.Context, tx pgx.Tx) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	// tern's unlock may not have reached the server, and a session lock
	// outlives ROLLBACK: a statement that failed after tern took its lock
	// aborted the transaction, and the unlock that came next failed with
	// it; or the caller's ctx ended between two statements, and pgx sent
	// neither the next one nor the unlock (the transaction is then still
	// usable). Rolled back to the savepoint, an aborted transaction is
	// usable again, still on the same server session.
	usable := true
	if tx.Conn().PgConn().TxStatus() == 'E' {
		_, err := tx.Exec(actx, "ROLLBACK TO SAVEPOINT "+runSavepoint)
		usable = err == nil // no savepoint yet: tern had not started
	}
	if usable {
		// pg_advisory_unlock releases a session lock only, never the
		// transaction's own (and answers false when none is held); tern
		// holds its lock once at a time.
		_, _ = tx.Exec(actx, "SELECT pg_advisory_unlock($1)", ternLockKey)
	}
	_ = tx.Rollback(actx)
}

// newMigrator prepares tern for schema with the embedded migrations, to run
// inside inRun's transaction.
func newMigrator(ctx context.Context, conn *pgx.Conn, schema string) (*migrate.Migrator, error) {
	// tern pastes the version table's name into its SQL as given: quoted,
	// a schema named by a reserved word (select, user, order) is valid too.
	// DisableTx: tern runs each migration in the transaction the caller
	// (inRun) opened, instead of a transaction of its own per migration.
	m, err := migrate.NewMigratorEx(ctx, conn, pgx.Identifier{schema, "schema_version"}.Sanitize(),
		&migrate.MigratorOptions{DisableTx: true})
	if err != nil {
		return nil, fmt.Errorf("migrate: prepare version table: %w", err)
	}
	m.Data["schema"] = pgx.Identifier{schema}.Sanitize()
	if err := m.LoadMigrations(files); err != nil {
		return nil, fmt.Errorf("migrate: load embedded migrations: %w", err)
	}
	return m, nil
}

// errNewerSchema is Migrate's error for a schema that a newer build
// migrated: tern's own answer ("outside the valid versions") does not say
// what to do.
func errNewerSchema(schema string, have, want int32) error {
	return fmt.Errorf("migrate: schema %q is at version %d, ahead of this build's %d: run the newer converge that migrated it (this one would not know its tables)", schema, have, want)
}

// readVersion returns the version schema is at, found false when it has
// no version table (or no schema) yet. It looks the table up in the
// catalogs, which any role may read, and then needs only SELECT on it.
func readVersion(ctx context.Context, conn *pgx.Conn, schema string) (version int32, found bool, err error) {
	err = conn.QueryRow(ctx, `SELECT EXISTS (SELECT FROM pg_catalog.pg_class c
		JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
		WHERE n.nspname = $1 AND c.relname = 'schema_version' AND c.relkind = 'r')`, schema).Scan(&found)
	if err != nil {
		return 0, false, fmt.Errorf("migrate: look up the version table of %q: %w", schema, err)
	}
	if !found {
		return 0, false, nil
	}
	// tern keeps one row; a table another process is creating right now
	// may have none yet: version 0.
	err = conn.QueryRow(ctx, "SELECT version FROM "+pgx.Identifier{schema, "schema_version"}.Sanitize()).Scan(&version)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, true, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("migrate: read schema version of %q: %w", schema, err)
	}
	return version, true, nil
}

// createSchema creates schema unless it exists, in the run's transaction.
// PostgreSQL checks the CREATE privilege on the database before IF NOT
// EXISTS, so CREATE SCHEMA only runs when pg_namespace does not have the
// schema: a role that owns a schema an administrator created for it need
// not create schemas.
func createSchema(ctx context.Context, tx pgx.Tx, schema string) error {
	exists := func() (bool, error) {
		var exists bool
		err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1)", schema).Scan(&exists)
		if err != nil {
			return false, fmt.Errorf("migrate: look up schema %q: %w", schema, err)
		}
		return exists, nil
	}
	if ok, err := exists(); err != nil || ok {
		return err
	}
	// Older builds created schemas under this lock only, not under
	// tern's: one may have created it while this run waited for it.
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockKey); err != nil {
		return fmt.Errorf("migrate: lock: %w", err)
	}
	if ok, err := exists(); err != nil || ok {
		return err
	}
	if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
		return fmt.Errorf("migrate: create schema %q (does the user have CREATE on the database?): %w", schema, err)
	}
	return nil
}

// Latest returns the newest migration version this build carries.
func Latest() (int32, error) {
	all, err := List()
	if err != nil {
		return 0, err
	}
	return all[len(all)-1].Version, nil
}

// List returns the migrations this build carries, oldest first.
func List() ([]Migration, error) {
	names, err := migrate.FindMigrations(files)
	if err != nil {
		return nil, fmt.Errorf("migrate: list embedded migrations: %w", err)
	}
	if len(names) == 0 {
		return nil, errors.New("migrate: no embedded migrations")
	}
	out := make([]Migration, len(names))
	for i, n := range names {
		// tern numbers migrations 1, 2, ... without gaps.
		out[i] = Migration{Version: int32(i + 1), Name: n}
	}
	return out, nil
}

// Current returns the schema's applied version, 0 when it was never migrated.
func Current(ctx context.Context, pool *pgxpool.Pool, cfg *Config) (int32, error) {
	c := cfg.withDefaults()
	if err := ValidateSchema(c.Schema); err != nil {
		return 0, err
	}
	// The catalog first, then the table, as Migrate reads it: the other
	// order failed when another process's Migrate created the table
	// between the two reads (a table found cannot vanish before the read;
	// one not found yet is version 0).
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return 0, fmt.Errorf("read schema version of %q: %w", c.Schema, err)
	}
	defer conn.Release()
	v, _, err := readVersion(ctx, conn.Conn(), c.Schema)
	return v, err
}

// migrateTo brings the schema up (or down) to version target, in one run
// as Migrate's. Tests use it to build a database as an older release left
// it.
func migrateTo(ctx context.Context, conn *pgx.Conn, schema string, target int32) error {
	_, err := inRun(ctx, conn, schema, func(m *migrate.Migrator) (int32, error) {
		return 0, m.MigrateTo(ctx, target)
	})
	return err
}
