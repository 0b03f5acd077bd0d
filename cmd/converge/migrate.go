package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/converge-es/converge/migrations"
)

// migrateCmd is `converge migrate`: it brings the schema up to the newest
// version this binary carries, or with --status only reports where it is.
type migrateCmd struct {
	db *dbOptions
	// status reports the current and latest versions without migrating.
	status bool
	out    io.Writer
}

func newMigrateCmd() *cobra.Command {
	c := &migrateCmd{}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade converge's tables in PostgreSQL",
		Long: `migrate applies the SQL migrations embedded in this binary to --schema,
creating the schema if needed. It is idempotent and safe to run from several
processes at once. With --status it only prints the applied and the latest
version.`,
		Example: `  converge migrate --database-url postgres://postgres@127.0.0.1:5432/app
  converge migrate --status --schema orders`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := dbOptionsFrom(cmd)
			if err != nil {
				return err
			}
			c.db = db
			c.out = cmd.OutOrStdout()
			if err := c.validate(); err != nil {
				return err
			}
			return c.run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&c.status, "status", false, "print the applied and latest schema versions without migrating")
	return cmd
}

func (c *migrateCmd) validate() error {
	if c.db == nil {
		return errors.New("migrate: no database options")
	}
	if c.out == nil {
		return errors.New("migrate: no output")
	}
	return c.db.validate()
}

func (c *migrateCmd) run(ctx context.Context) error {
	latest, err := migrations.Latest()
	if err != nil {
		return err
	}
	pool, err := c.db.openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	cfg := &migrations.Config{Schema: c.db.Schema}

	current, err := migrations.Current(ctx, pool, cfg)
	if err != nil {
		return err
	}
	if current > latest {
		// Migrating would fail inside tern with a less helpful message.
		return fmt.Errorf("schema %q is at version %d but this converge only knows up to %d: upgrade converge", c.db.Schema, current, latest)
	}
	if c.status {
		return c.printStatus(current, latest)
	}

	current, err = migrations.Migrate(ctx, pool, cfg)
	if err != nil {
		return err
	}
	return c.printStatus(current, latest)
}

// printStatus writes e.g. `schema "converge" at version 1 (latest 1)`,
// followed by what to do when migrations are pending.
func (c *migrateCmd) printStatus(current, latest int32) error {
	line := fmt.Sprintf("schema %q at version %d (latest %d)", c.db.Schema, current, latest)
	if pending := latest - current; pending > 0 {
		line += fmt.Sprintf(": %d pending, run `converge migrate --schema %s` to apply", pending, c.db.Schema)
	}
	_, err := fmt.Fprintln(c.out, line)
	return err
}
