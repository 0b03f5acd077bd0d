package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/migrations"
)

// demoCmd is `converge demo`: the order/payment workflow, in memory unless
// --postgres is given.
type demoCmd struct {
	postgres bool
}

func newDemoCmd() *cobra.Command {
	c := &demoCmd{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the order/payment workflow and narrate what consistency-aware reads do",
		Long: `demo places orders, reads them back with consistency tokens, lets a payment
step decide only on caught-up read models, pauses a projection to show a
stale answer and the lag report, and lets it catch up again.

It runs in memory and needs no database. With --postgres it runs on
PostgreSQL (--database-url or DATABASE_URL) in --schema, migrating it first.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return c.run(cmd) },
	}
	cmd.Flags().BoolVar(&c.postgres, "postgres", false, "run on PostgreSQL instead of in memory")
	return cmd
}

func (c *demoCmd) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	reg := events.NewRegistry()
	orders.Register(reg)
	var store orders.Backend
	if c.postgres {
		db, err := dbOptionsFrom(cmd)
		if err != nil {
			return err
		}
		pool, err := db.openPool(ctx)
		if err != nil {
			return err
		}
		defer pool.Close()
		if _, err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: db.Schema}); err != nil {
			return err
		}
		pg, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
		if err != nil {
			return err
		}
		defer pg.Close()
		store = pg
	} else {
		mem, err := memstore.New(&memstore.Config{Registry: reg})
		if err != nil {
			return err
		}
		defer mem.Close()
		store = mem
	}
	if _, err := orders.Run(ctx, &orders.Config{Store: store, Out: cmd.OutOrStdout()}); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}
