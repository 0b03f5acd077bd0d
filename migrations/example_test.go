package migrations_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/migrations"
)

// migrateAtStartup is the package documentation's start-up code.
func migrateAtStartup(ctx context.Context, pool *pgxpool.Pool) error {
	version, err := migrations.Migrate(ctx, pool, &migrations.Config{
		Schema: "orders",
		OnApplied: func(m migrations.Migration) {
			log.Printf("applied migration %d (%s)", m.Version, m.Name)
		},
	})
	if err != nil {
		return err
	}
	log.Printf("schema orders at version %d", version)
	return nil
}

// ExampleMigrate runs the start-up code twice: the first run applies every
// migration, the second finds nothing to do. It runs on a database of its
// own, dropped at the end, so that its schema can be called "orders"
// whatever else shares the server.
func ExampleMigrate() {
	ctx := context.Background()
	pool, drop, err := ownDatabase(ctx, "example_migrate")
	if err != nil {
		log.Fatal(err)
	}
	defer drop()
	// The log goes to the example's output.
	out, flags := log.Writer(), log.Flags()
	log.SetOutput(os.Stdout)
	log.SetFlags(0)
	defer func() { log.SetOutput(out); log.SetFlags(flags) }()

	if err := migrateAtStartup(ctx, pool); err != nil {
		log.Fatal(err)
	}
	// Again, as the next start would: nothing to apply.
	if err := migrateAtStartup(ctx, pool); err != nil {
		log.Fatal(err)
	}
	current, err := migrations.Current(ctx, pool, &migrations.Config{Schema: "orders"})
	if err != nil {
		log.Fatal(err)
	}
	latest, err := migrations.Latest()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("up to date:", current == latest)
	// Output:
	// applied migration 1 (0001_events.sql)
	// applied migration 2 (0002_projections.sql)
	// applied migration 3 (0003_engine.sql)
	// applied migration 4 (0004_projections_on_rows.sql)
	// applied migration 5 (0005_streams_from_events.sql)
	// schema orders at version 5
	// schema orders at version 5
	// up to date: true
}

// ownDatabase creates a database named after prefix and the process on the
// tests' server (DATABASE_URL) and returns a pool on it, and a function
// that closes the pool and drops the database.
func ownDatabase(ctx context.Context, prefix string) (*pgxpool.Pool, func(), error) {
	url := os.Getenv("DATABASE_URL")
	admin, err := pgx.Connect(ctx, url)
	if err != nil {
		return nil, nil, fmt.Errorf("connect to DATABASE_URL: %w", err)
	}
	name := pgx.Identifier{fmt.Sprintf("%s_%d", prefix, os.Getpid())}
	dropDatabase := func() {
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name.Sanitize()+" WITH (FORCE)")
		_ = admin.Close(ctx)
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name.Sanitize()); err != nil {
		dropDatabase()
		return nil, nil, fmt.Errorf("create a database for the example: %w", err)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		dropDatabase()
		return nil, nil, err
	}
	cfg.ConnConfig.Database = name[0]
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		dropDatabase()
		return nil, nil, err
	}
	return pool, func() { pool.Close(); dropDatabase() }, nil
}

func ExampleList() {
	all, err := migrations.List()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("first:", all[0].Version, all[0].Name)
	// Output:
	// first: 1 0001_events.sql
}
