package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/cobra"

	"github.com/converge-es/converge/migrations"
)

// Names of the persistent flags every command inherits. Read them with
// dbOptionsFrom rather than by name.
const (
	flagDatabaseURL = "database-url"
	flagSchema      = "schema"
)

// subcommands is the one place where converge's commands are registered.
// To add a command, write newXCmd in its own file (x.go) and append it
// here; keep the list sorted by command name.
//
// A constructor returns a fresh *cobra.Command each call (tests build many
// roots) and keeps its options in a struct with a validate method, as
// migrate.go does. Commands that talk to PostgreSQL get the shared
// --database-url and --schema settings from dbOptionsFrom(cmd) and open
// their pool with dbOptions.openPool.
var subcommands = []func() *cobra.Command{
	newBenchCmd,
	newDeadLettersCmd,
	newDemoCmd,
	newLagCmd,
	newMigrateCmd,
	newProjectionsCmd,
	newSagasCmd,
	newServeCmd,
}

// newRootCmd builds the converge command tree.
func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "converge",
		Short: "Consistency-aware saga and process-manager engine for event-sourced systems",
		Long: `converge runs sagas and projections over an event store in PostgreSQL.
Every write returns a consistency token, no read or saga decision acts on a
read model that has not caught up with it, every wait has a deadline, and
staleness is visible.

Commands that use PostgreSQL connect to --database-url, else to the
DATABASE_URL environment variable; one of them is required (converge never
guesses a database). The standard libpq PG* variables (PGPASSWORD,
PGSSLMODE, ...) fill in what the URL leaves out.`,
		// A failing command prints its error once, without the usage text
		// (which would hide the error); main prints it.
		SilenceUsage:  true,
		SilenceErrors: true,
		// --version prints "converge VERSION" and exits.
		Version: version(),
	}
	root.SetVersionTemplate("converge {{.Version}}\n")
	// A mistyped flag says where the right ones are listed.
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return fmt.Errorf("%w (see `%s --help`)", err, cmd.CommandPath())
	})
	root.PersistentFlags().String(flagDatabaseURL, "",
		"PostgreSQL URL, e.g. postgres://user@127.0.0.1:5432/db (default $DATABASE_URL)")
	root.PersistentFlags().String(flagSchema, migrations.DefaultSchema,
		"PostgreSQL schema holding converge's tables")
	for _, newCmd := range subcommands {
		root.AddCommand(newCmd())
	}
	return root
}

// execute runs root and adds to cobra's "unknown command" errors (a
// mistyped command, or arguments to a command that takes none) where the
// commands are listed: the help of the command the error names. cobra
// gives them no type to match, only this form:
// unknown command "x" for "converge group".
func execute(ctx context.Context, root *cobra.Command) error {
	err := root.ExecuteContext(ctx)
	if err == nil || !strings.HasPrefix(err.Error(), "unknown command ") {
		return err
	}
	path := "converge"
	if m := unknownFor.FindStringSubmatch(err.Error()); m != nil {
		path = m[1]
	}
	return fmt.Errorf("%w (see `%s --help`)", err, path)
}

// unknownFor finds the command path in cobra's unknown-command error.
var unknownFor = regexp.MustCompile(`" for "([^"]+)"`)
