package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/converge-es/converge/migrations"
)

// connectTimeout bounds how long a command waits for PostgreSQL to answer
// before it says so, unless the URL sets connect_timeout.
const connectTimeout = 10 * time.Second

// hintConnect goes into every connection error: it names the fix.
const hintConnect = "is PostgreSQL running? set --database-url or DATABASE_URL"

// dbOptions are the connection settings shared by every command that talks
// to PostgreSQL: the root's persistent --database-url and --schema flags.
type dbOptions struct {
	// URL is --database-url, else $DATABASE_URL. Empty means pgx reads the
	// libpq PG* environment variables and their defaults.
	URL string
	// Schema is --schema. Defaults to migrations.DefaultSchema.
	Schema string
}

// dbOptionsFrom reads the shared connection flags of cmd (inherited from the
// root) and validates them.
func dbOptionsFrom(cmd *cobra.Command) (*dbOptions, error) {
	url, err := cmd.Flags().GetString(flagDatabaseURL)
	if err != nil {
		return nil, err
	}
	schema, err := cmd.Flags().GetString(flagSchema)
	if err != nil {
		return nil, err
	}
	o := &dbOptions{URL: databaseURL(url, os.Getenv), Schema: schema}
	if err := o.validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// databaseURL picks the flag's value, else $DATABASE_URL. It may return ""
// on purpose: pgxpool.ParseConfig("") reads PGHOST, PGPORT and the rest.
func databaseURL(flag string, getenv func(string) string) string {
	return cmp.Or(flag, getenv("DATABASE_URL"))
}

func (o *dbOptions) validate() error {
	if o.Schema == "" {
		o.Schema = migrations.DefaultSchema
	}
	if err := migrations.ValidateSchema(o.Schema); err != nil {
		return fmt.Errorf("--%s: %w", flagSchema, err)
	}
	return nil
}

// openPool connects to PostgreSQL and checks the server answers, so a
// command fails at once with a useful message instead of on first use.
// The caller closes the pool.
func (o *dbOptions) openPool(ctx context.Context) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		// pgx redacts any password in its parse errors.
		return nil, fmt.Errorf("parse database URL: %w (set --%s or DATABASE_URL to a URL like postgres://user@host:5432/db)", err, flagDatabaseURL)
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	// Name the target without the password, which may be in the URL.
	target := fmt.Sprintf("%s@%s:%d/%s", cfg.ConnConfig.User, cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Database)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s (%s): %w", target, hintConnect, err)
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", target, ctx.Err())
		}
		return nil, fmt.Errorf("connect to PostgreSQL at %s (%s): %w", target, hintConnect, err)
	}
	return pool, nil
}
