package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/migrations"
)

// demoSchemaInfix joins --schema and a random suffix into the name of the
// fresh schema a PostgreSQL demo run works in.
const demoSchemaInfix = "_demo_"

// demoCmd is `converge demo`: the order workflow under load, in memory
// unless a database is given.
type demoCmd struct {
	orders    int
	customers int
	// customersSet says whether --customers was given.
	customersSet bool
	seed         uint64
	lag          time.Duration
	postgres     bool
	keep         bool
	out          io.Writer
}

// maxDemoLag is the largest --lag (orders.MaxDemoLag). The demo's stalls
// queue one behind another on order_summary's one partition, and a
// simulated customer waits orders.DefaultDemoSettleTimeout (2m) for its
// order to settle: at 1s the default run takes about three minutes, at
// 10s it failed by construction, reporting sagas that did not end
// although converge did nothing wrong. It also keeps 8×--lag, which a
// huge value made overflow into a negative stall that never happened,
// far from the largest time.Duration.
const maxDemoLag = orders.MaxDemoLag

func (c *demoCmd) validate() error {
	switch {
	case c.orders < 1 || c.orders > orders.MaxDemoOrders:
		return fmt.Errorf("--orders %d: place 1 to %d (the run plans every order in memory)", c.orders, orders.MaxDemoOrders)
	case c.customers < 1:
		return fmt.Errorf("--customers %d: use at least 1", c.customers)
	case c.customers > c.orders && c.customersSet:
		return fmt.Errorf("--customers %d: use at most --orders (%d): each customer places at least one order, so the others would never place any", c.customers, c.orders)
	case c.lag < 0 || c.lag > maxDemoLag:
		return fmt.Errorf("--lag %s: use 0 for none or a duration up to %s, such as 100ms: one order in 40 stalls for 8×--lag, and a simulated customer waits %s for its order to settle",
			c.lag, maxDemoLag, orders.DefaultDemoSettleTimeout)
	}
	// Unasked, the default number of customers gives way to fewer orders:
	// the customers without an order would only be announced.
	c.customers = min(c.customers, c.orders)
	return nil
}

func newDemoCmd() *cobra.Command {
	c := &demoCmd{}
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the order workflow: concurrent customers, sagas, compensations and lagging read models",
		Long: `demo places --orders orders from --customers simulated customers (no more
customers than orders), each waiting for its order to close before placing
the next. Cards are declined or never answered at random, some orders ask
for a sold-out product, and order_summary (the read model the saga's
credit check reads) lags on purpose: a quarter of the orders reach it up
to twice --lag late, and one in forty stalls for eight times --lag,
long enough to park the step (--lag is at most ` + maxDemoLag.String() + `). The run is
seeded: the same --seed gives the same outcome counts.

It ends with a summary and exits non-zero unless every saga reached a
terminal state, every read model equals a clean rebuild from the events, and
each customer's charges less refunds and each product's reserved stock
match the confirmed orders.

It runs in memory and needs nothing installed. With --database-url (or
--postgres and DATABASE_URL) it runs on PostgreSQL in a fresh schema
<--schema>_demo_<random>, migrated first and dropped at the end unless
--keep; --keep and --schema are refused without PostgreSQL.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c.customersSet = cmd.Flags().Changed("customers")
			if err := c.validate(); err != nil {
				return err
			}
			c.out = cmd.OutOrStdout()
			return c.run(cmd)
		},
	}
	f := cmd.Flags()
	f.IntVar(&c.orders, "orders", orders.DefaultDemoOrders, "orders to place")
	f.IntVar(&c.customers, "customers", orders.DefaultDemoCustomers, "concurrent simulated customers (at most --orders; fewer orders lower the default)")
	f.Uint64Var(&c.seed, "seed", 1, "seed of the orders and their outcomes")
	f.DurationVar(&c.lag, "lag", orders.DefaultDemoLag, "projection lag injected into order_summary: a quarter of orders up to 2×, one in 40 8× this (0: none; at most "+maxDemoLag.String()+")")
	f.BoolVar(&c.postgres, "postgres", false, "run on PostgreSQL at DATABASE_URL (implied by --database-url)")
	f.BoolVar(&c.keep, "keep", false, "keep the PostgreSQL demo schema instead of dropping it")
	return cmd
}

func (c *demoCmd) config() *orders.DemoConfig {
	lag := c.lag
	if lag == 0 {
		lag = -1 // DemoConfig: negative is none, zero the default
	}
	return &orders.DemoConfig{
		Orders: c.orders, Customers: c.customers, Seed: c.seed, Lag: lag,
		Out: c.out, Bar: isTerminal(c.out),
	}
}

func (c *demoCmd) run(cmd *cobra.Command) error {
	ctx := cmd.Context()
	url, err := cmd.Flags().GetString(flagDatabaseURL)
	if err != nil {
		return err
	}
	// A --database-url given blank is refused by dbOptionsFrom, not run
	// in memory: the user asked for PostgreSQL.
	if !c.postgres && url == "" && !cmd.Flags().Changed(flagDatabaseURL) {
		// Flags that only the PostgreSQL demo reads would be ignored in
		// memory; a user who passed one meant PostgreSQL.
		for _, name := range []string{"keep", flagSchema} {
			if cmd.Flags().Changed(name) {
				return fmt.Errorf("--%s applies to the PostgreSQL demo only (the in-memory demo keeps nothing): add --database-url URL, or --postgres with DATABASE_URL set, or leave --%s out", name, name)
			}
		}
		store, err := memstore.New(&memstore.Config{Registry: orders.NewRegistry()})
		if err != nil {
			return err
		}
		defer store.Close()
		return c.demo(ctx, store)
	}
	db, err := dbOptionsFrom(cmd)
	if err != nil {
		return err
	}
	return c.runPostgres(ctx, db)
}

func (c *demoCmd) runPostgres(ctx context.Context, db *dbOptions) (err error) {
	// The name first: a --schema too long for the suffix is a mistake in
	// the flags, to be told before anything connects.
	suffix := make([]byte, 4)
	_, _ = rand.Read(suffix)
	schema := db.Schema + demoSchemaInfix + hex.EncodeToString(suffix)
	if err := migrations.ValidateSchema(schema); err != nil {
		return fmt.Errorf("--schema %q: demo appends %q and 8 characters to it: %w", db.Schema, demoSchemaInfix, err)
	}
	pool, err := db.openPoolWith(ctx, 24)
	if err != nil {
		return err
	}
	defer pool.Close()
	if c.keep {
		fmt.Fprintf(c.out, "demo schema kept: %s\n", schema)
	} else {
		defer func() {
			if derr := dropSchema(context.WithoutCancel(ctx), pool, schema); derr != nil {
				err = errors.Join(err, derr)
			}
		}()
	}
	if _, err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: schema}); err != nil {
		return err
	}
	store, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: schema, Registry: orders.NewRegistry()})
	if err != nil {
		return err
	}
	err = c.demo(ctx, store)
	// The store's listener holds a connection; close it before the drop.
	return errors.Join(err, store.Close())
}

func (c *demoCmd) demo(ctx context.Context, store converge.Store) error {
	if _, err := orders.RunDemo(ctx, store, c.config()); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return nil
}

// dropSchema drops a demo run's schema, or says how to do it by hand.
func dropSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	drop := "DROP SCHEMA " + pgx.Identifier{schema}.Sanitize() + " CASCADE"
	if _, err := pool.Exec(ctx, drop); err != nil {
		return fmt.Errorf("demo: drop schema %s: %w (drop it by hand: psql -c '%s')", schema, err, drop)
	}
	return nil
}

// isTerminal reports whether w is a terminal, where a progress bar can be
// redrawn in place.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
