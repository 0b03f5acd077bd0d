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

func ExampleMigrate() {
	ctx := context.Background()
	// The tests' database; an application passes its own.
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	// A schema of the example's own (other test runs may share the
	// database), dropped at the end.
	schema := fmt.Sprintf("example_migrate_%d", os.Getpid())
	defer func() { _, _ = pool.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE") }()

	var applied []migrations.Migration
	version, err := migrations.Migrate(ctx, pool, &migrations.Config{
		Schema: schema,
		OnApplied: func(m migrations.Migration) {
			applied = append(applied, m) // a program would log it
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	all, err := migrations.List()
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("first applied: %d (%s)\n", applied[0].Version, applied[0].Name)
	fmt.Println("applied all:", len(applied) == len(all), "at the latest version:", version == all[len(all)-1].Version)

	// Again: nothing to apply.
	if _, err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: schema}); err != nil {
		log.Fatal(err)
	}
	current, err := migrations.Current(ctx, pool, &migrations.Config{Schema: schema})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("still at the latest version:", current == version)
	// Output:
	// first applied: 1 (0001_events.sql)
	// applied all: true at the latest version: true
	// still at the latest version: true
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
