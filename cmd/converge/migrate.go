package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/converge-es/converge/migrations"
)

// exitPending is the exit status of `converge migrate --status` when
// migrations are pending, so a deploy script can tell "needs migrating" (3)
// from "could not find out" (1). It matches lag's exit status for a breach.
const exitPending = 3

// migrateCmd is `converge migrate`: it brings the schema up to the newest
// version this binary carries, or with --status only reports where it is.
type migrateCmd struct {
	db *dbOptions
	// status reports the applied and pending migrations without migrating.
	status bool
	out    io.Writer
}

func newMigrateCmd() *cobra.Command {
	c := &migrateCmd{}
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade converge's tables in PostgreSQL",
		Long: `migrate applies the SQL migrations embedded in this binary to --schema,
creating the schema if needed. It names the database (password masked) and
the schema, then each migration it applies, or says the schema is already
at the latest version. It is idempotent and safe to run from several
processes at once.

The database is --database-url, else DATABASE_URL; one of them is required.

With --status it changes nothing: it prints the applied and the pending
migrations and exits with status 3 when any are pending (1 when it cannot
find out), so deploy scripts can check before starting converge.`,
		Example: `  converge migrate --database-url postgres://postgres@127.0.0.1:5432/app
  DATABASE_URL=postgres://postgres@127.0.0.1:5432/app converge migrate --schema orders
  converge migrate --status --database-url postgres://postgres@127.0.0.1:5432/app || converge migrate ...`,
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
	cmd.Flags().BoolVar(&c.status, "status", false, "print the applied and pending migrations without migrating; exit 3 when some are pending")
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
	all, err := migrations.List()
	if err != nil {
		return err
	}
	latest := all[len(all)-1].Version
	pool, err := c.db.openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	p := &printer{w: c.out}
	p.printf("database %s\n", maskedURL(pool.Config().ConnConfig))
	p.printf("schema   %s\n", c.db.Schema)

	current, err := migrations.Current(ctx, pool, &migrations.Config{Schema: c.db.Schema})
	if err != nil {
		return err
	}
	if current > latest {
		// Migrating would fail inside tern with a less helpful message.
		return fmt.Errorf("schema %q is at version %d but this converge only knows up to %d: upgrade converge", c.db.Schema, current, latest)
	}
	if c.status {
		return c.printStatus(p, all, current)
	}

	applied := 0
	reached, err := migrations.Migrate(ctx, pool, &migrations.Config{
		Schema: c.db.Schema,
		OnApplied: func(m migrations.Migration) {
			applied++
			p.printf("applied  %d %s\n", m.Version, m.Name)
		},
	})
	if err != nil {
		return err
	}
	if applied == 0 {
		p.printf("already at version %d (latest)\n", reached)
	} else {
		p.printf("now at version %d (latest)\n", reached)
	}
	return p.err
}

// printStatus lists applied and pending migrations and returns a
// pendingError when some are pending.
func (c *migrateCmd) printStatus(p *printer, all []migrations.Migration, current int32) error {
	var applied, pending []string
	for _, m := range all {
		s := fmt.Sprintf("%d %s", m.Version, m.Name)
		if m.Version <= current {
			applied = append(applied, s)
		} else {
			pending = append(pending, s)
		}
	}
	p.printf("version  %d (latest %d)\n", current, all[len(all)-1].Version)
	p.printf("applied  %s\n", listOrNone(applied))
	p.printf("pending  %s\n", listOrNone(pending))
	if p.err != nil {
		return p.err
	}
	if len(pending) > 0 {
		return &pendingError{schema: c.db.Schema, n: len(pending)}
	}
	return nil
}

func listOrNone(items []string) string {
	if len(items) == 0 {
		return "none"
	}
	return strings.Join(items, ", ")
}

// pendingError is what `migrate --status` fails with when the schema is
// behind this binary.
type pendingError struct {
	schema string
	n      int
}

func (e *pendingError) Error() string {
	return fmt.Sprintf("schema %q has %d pending migration(s): run `converge migrate --schema %s` with the same database", e.schema, e.n, e.schema)
}

// ExitCode is the process exit status for this error.
func (e *pendingError) ExitCode() int { return exitPending }

// printer writes lines and keeps the first write error, so a command can
// print several lines and check once.
type printer struct {
	w   io.Writer
	err error
}

func (p *printer) printf(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}
