package migrations

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/tern/v2/migrate"
)

//go:embed *.sql
var files embed.FS

// DefaultSchema is the schema converge's tables live in by default.
const DefaultSchema = "converge"

// schemaLockKey serialises CREATE SCHEMA between concurrent migrators;
// tern's own lock only covers the migrations that follow.
const schemaLockKey = int64(0x636f6e7665726765) // "converge"

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Config says where to migrate.
type Config struct {
	// Schema is the PostgreSQL schema to create the tables in. Lower-case
	// letters, digits and underscores, not one PostgreSQL reserves
	// ("pg_..." and information_schema). Defaults to DefaultSchema.
	Schema string
	// OnApplied, when set, is called by Migrate after each migration it
	// applied has committed, in version order. A migration that another
	// process applied concurrently is not reported. Defaults to nil: no
	// calls.
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
	// statement_timeout, search_path), and a migration interrupted at the
	// wrong moment could leave tern's session lock held. The pool opens a
	// fresh connection, through AfterConnect, when it needs one.
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
	// role that may only use converge's tables call Migrate.
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
	if err := createSchema(ctx, conn, schema); err != nil {
		return 0, err
	}
	m, err := newMigrator(ctx, conn, schema)
	if err != nil {
		return 0, err
	}
	// tern's own answer to a newer schema ("outside the valid versions")
	// does not say what to do.
	have, err = m.GetCurrentVersion(ctx)
	if err != nil {
		return 0, fmt.Errorf("migrate: read schema version of %q: %w", schema, err)
	}
	if want := int32(len(m.Migrations)); have > want {
		return have, errNewerSchema(schema, have, want)
	}
	// tern applies each migration in a transaction of its own and only
	// says when one starts: the previous one has committed by then, and
	// the last one once Migrate returns without error.
	var started *Migration
	m.OnStart = func(version int32, name, _, _ string) {
		if started != nil && onApplied != nil {
			onApplied(*started)
		}
		started = &Migration{Version: version, Name: name}
	}
	if err := m.Migrate(ctx); err != nil {
		return 0, fmt.Errorf("migrate schema %q: %w", schema, err)
	}
	if started != nil && onApplied != nil {
		onApplied(*started)
	}
	return m.GetCurrentVersion(ctx)
}

// newMigrator prepares tern for schema with the embedded migrations.
func newMigrator(ctx context.Context, conn *pgx.Conn, schema string) (*migrate.Migrator, error) {
	// tern pastes the version table's name into its SQL as given: quoted,
	// a schema named by a reserved word (select, user, order) is valid too.
	m, err := migrate.NewMigrator(ctx, conn, pgx.Identifier{schema, "schema_version"}.Sanitize())
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

// createSchema creates schema unless it exists. PostgreSQL checks the
// CREATE privilege on the database before IF NOT EXISTS, so CREATE SCHEMA
// only runs when pg_namespace does not have the schema: a role that owns a
// schema an administrator created for it need not create schemas.
func createSchema(ctx context.Context, conn *pgx.Conn, schema string) error {
	// Read committed whatever the session's default (a pool's AfterConnect
	// may set another): the look-up after the lock then sees a schema that
	// the migrator which held the lock before created.
	return pgx.BeginTxFunc(ctx, conn, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", schemaLockKey); err != nil {
			return fmt.Errorf("migrate: lock: %w", err)
		}
		var exists bool
		if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_catalog.pg_namespace WHERE nspname = $1)", schema).Scan(&exists); err != nil {
			return fmt.Errorf("migrate: look up schema %q: %w", schema, err)
		}
		if exists {
			return nil
		}
		if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
			return fmt.Errorf("migrate: create schema %q (does the user have CREATE on the database?): %w", schema, err)
		}
		return nil
	})
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
	var v int32
	err := pool.QueryRow(ctx, "SELECT version FROM "+pgx.Identifier{c.Schema, "schema_version"}.Sanitize()).Scan(&v)
	if err != nil {
		var exists bool
		if qerr := pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", c.Schema+".schema_version").Scan(&exists); qerr == nil && !exists {
			return 0, nil
		}
		return 0, fmt.Errorf("read schema version of %q: %w", c.Schema, err)
	}
	return v, nil
}

// migrateTo brings the schema up (or down) to version target. Tests use it
// to build a database as an older release left it.
func migrateTo(ctx context.Context, conn *pgx.Conn, schema string, target int32) error {
	if err := createSchema(ctx, conn, schema); err != nil {
		return err
	}
	m, err := newMigrator(ctx, conn, schema)
	if err != nil {
		return err
	}
	return m.MigrateTo(ctx, target)
}
