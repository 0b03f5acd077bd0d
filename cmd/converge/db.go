package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/spf13/cobra"

	"github.com/converge-es/converge/migrations"
)

// connectTimeout bounds how long a command waits for PostgreSQL to answer
// before it says so, unless the URL sets connect_timeout.
const connectTimeout = 10 * time.Second

// hintConnect goes into every connection error: it names the fix.
const hintConnect = "is PostgreSQL running? check --database-url or DATABASE_URL"

// errNoDatabaseURL is the error of a command that needs PostgreSQL when
// neither --database-url nor DATABASE_URL names a database. converge never
// falls back to libpq's default database: migrating or benchmarking
// whatever database PGDATABASE or the user name happens to select is a
// surprise nobody wants.
var errNoDatabaseURL = errors.New("no database given: pass --database-url postgres://USER@HOST:5432/DB or set DATABASE_URL")

// errBlankDatabaseURL is the error of a --database-url given with a blank
// value.
var errBlankDatabaseURL = errors.New("--database-url is empty (is the variable you passed set?): pass postgres://USER@HOST:5432/DB, or leave the flag out to use DATABASE_URL")

// errNoDatabaseName is the error when the URL leaves the database out, for
// the same reason.
var errNoDatabaseName = errors.New("the database URL names no database (PostgreSQL would pick PGDATABASE's, or the one named after the user): add it, as in postgres://USER@HOST:5432/DB, or dbname=DB in a key=value string")

// dbOptions are the connection settings shared by every command that talks
// to PostgreSQL: the root's persistent --database-url and --schema flags.
type dbOptions struct {
	// URL is --database-url, else $DATABASE_URL; required. A URL or a
	// key=value connection string; the libpq PG* environment variables
	// (PGPASSWORD, PGSSLMODE, ...) fill in what it leaves out.
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
	if strings.TrimSpace(url) == "" && cmd.Flags().Changed(flagDatabaseURL) {
		// Given but blank is most often a shell variable that is not set:
		// falling back to DATABASE_URL, or to memory where a command can
		// run there, would run against something the user did not name.
		return nil, errBlankDatabaseURL
	}
	if schema == "" && cmd.Flags().Changed(flagSchema) {
		// The same mistake: the default schema is not the one named.
		return nil, emptyFlag(flagSchema, "name a schema, or leave --schema out for "+strconv.Quote(migrations.DefaultSchema))
	}
	o := &dbOptions{URL: databaseURL(url, os.Getenv), Schema: schema}
	if err := o.validate(); err != nil {
		return nil, err
	}
	return o, nil
}

// databaseURL picks the flag's value, else $DATABASE_URL, else "" (which
// validate rejects).
func databaseURL(flag string, getenv func(string) string) string {
	return cmp.Or(flag, getenv("DATABASE_URL"))
}

func (o *dbOptions) validate() error {
	// A blank value is no database: pgx would read it as a connection
	// string that sets nothing and connect wherever libpq's defaults lead.
	o.URL = strings.TrimSpace(o.URL)
	if o.URL == "" {
		return errNoDatabaseURL
	}
	// The form first: "names no database, add it" is no help for a URL
	// of another database, or for text that is no URL at all.
	if err := checkURLForm(o.URL); err != nil {
		return err
	}
	if !namesDatabase(o.URL) {
		return errNoDatabaseName
	}
	if o.Schema == "" {
		o.Schema = migrations.DefaultSchema
	}
	if err := migrations.ValidateSchema(o.Schema); err != nil {
		return fmt.Errorf("--%s: %w", flagSchema, err)
	}
	return nil
}

// errBadDatabaseURL is wrapped by the errors of a database URL that is
// not PostgreSQL's, or that pgx cannot parse.
var errBadDatabaseURL = errors.New("bad database URL (--database-url, else DATABASE_URL)")

// urlForm says what a database URL looks like, in every error about one.
const urlForm = "use postgres://USER@HOST:5432/DB (or postgresql://), or key=value settings such as host=HOST user=USER dbname=DB"

// urlScheme finds the scheme of anything written like a URL, and the //
// that should follow it. A key=value string cannot match: its first key
// ends at '=' or a space.
var urlScheme = regexp.MustCompile(`^([A-Za-z][A-Za-z0-9+.-]*):(//)?`)

// checkURLForm refuses a connection string that is not PostgreSQL's or
// that pgx cannot parse, saying what one looks like. The value may hold
// a password: the error quotes at most its scheme.
func checkURLForm(conn string) error {
	// pgx takes anything but a postgres:// or postgresql:// URL for
	// key=value settings, and says what is wrong with those (or accepts
	// "postgres:/db?dbname=x" as one setting of an odd name).
	m := urlScheme.FindStringSubmatch(conn)
	pg := m != nil && (strings.EqualFold(m[1], "postgres") || strings.EqualFold(m[1], "postgresql"))
	switch {
	case m != nil && m[2] != "" && (m[1] == "postgres" || m[1] == "postgresql"):
	case pg && m[2] == "":
		return fmt.Errorf("%w: the // after %s: is missing; %s", errBadDatabaseURL, m[1], urlForm)
	case pg:
		// pgx reads the scheme case-sensitively.
		return fmt.Errorf("%w: write its scheme, %s://, in lower case; %s", errBadDatabaseURL, m[1], urlForm)
	case m != nil && m[2] != "":
		return fmt.Errorf("%w: its scheme is %s://, and converge works on PostgreSQL only; %s", errBadDatabaseURL, m[1], urlForm)
	case m != nil || !strings.Contains(conn, "="):
		// Not a scheme to quote: "user:password@host" starts so too.
		return fmt.Errorf("%w: it is neither a postgres:// URL nor key=value settings; %s", errBadDatabaseURL, urlForm)
	}
	if _, err := pgxpool.ParseConfig(conn); err != nil {
		return fmt.Errorf("%w: %s; %s", errBadDatabaseURL, parseFault(err), urlForm)
	}
	return nil
}

// parseFault is pgx's parse error without the connection string it
// quotes: pgx masks the passwords it recognizes there, on a best-effort
// basis, and what is left is enough to find the mistake.
func parseFault(err error) string {
	var pe *pgconn.ParseConfigError
	if !errors.As(err, &pe) {
		return err.Error()
	}
	bare := *pe
	bare.ConnString = ""
	return strings.TrimPrefix(bare.Error(), "cannot parse ``: ")
}

// namesDatabase reports whether a connection URL or key=value string names
// a database itself, as pgx reads it: PGDATABASE, a service file or an
// empty dbname, quoted or not, would each leave the choice to libpq's
// defaults.
func namesDatabase(conn string) bool {
	if strings.HasPrefix(conn, "postgres://") || strings.HasPrefix(conn, "postgresql://") {
		u, err := url.Parse(conn)
		if err != nil {
			return true // the parse error, with its hint, is more useful
		}
		if strings.Trim(u.Path, "/") == "" && u.Query().Get("dbname") == "" {
			return false
		}
	} else {
		// A later setting overrides an earlier one, and the string's own
		// settings override the environment's and the service file's: so
		// the name survives this empty one only if the string sets one.
		// Deciding from what pgx parsed, not from the text, follows its
		// quoting and escapes.
		conn = "dbname='' " + conn
	}
	cfg, err := pgconn.ParseConfig(conn)
	if err != nil {
		return true // checkURLForm reported it; a later parse will again
	}
	return cfg.Database != ""
}

// openPool connects to PostgreSQL and checks the server answers, so a
// command fails at once with a useful message instead of on first use.
// The caller closes the pool.
func (o *dbOptions) openPool(ctx context.Context) (*pgxpool.Pool, error) {
	return o.openPoolWith(ctx, 0)
}

// openPoolWith is openPool with at least minConns connections allowed,
// unless the URL's pool_max_conns says more.
func (o *dbOptions) openPoolWith(ctx context.Context, minConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(o.URL)
	if err != nil {
		// validate parsed it already; only the PG* variables pgx also
		// reads can have changed since.
		return nil, fmt.Errorf("%w: %s; %s", errBadDatabaseURL, parseFault(err), urlForm)
	}
	cfg.MaxConns = max(cfg.MaxConns, minConns)
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	target := describeTarget(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to PostgreSQL at %s (%s): %w", target, connectHint(err, cfg.ConnConfig), err)
	}
	pctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil, fmt.Errorf("connect to PostgreSQL at %s: %w", target, ctx.Err())
		}
		return nil, fmt.Errorf("connect to PostgreSQL at %s (%s): %w", target, connectHint(err, cfg.ConnConfig), err)
	}
	return pool, nil
}

// SQLSTATEs of refused connections that have a specific fix.
const (
	sqlstateInvalidCatalogName   = "3D000" // the database does not exist
	sqlstateInvalidPassword      = "28P01"
	sqlstateInvalidAuthorization = "28000" // e.g. no pg_hba.conf entry
)

// connectHint names the likely fix for a failed connection: the server
// answered and refused, or nothing answered.
func connectHint(err error, cfg *pgx.ConnConfig) string {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return hintConnect
	}
	switch pgErr.Code {
	case sqlstateInvalidCatalogName:
		return fmt.Sprintf("create the database with `createdb %s`, or fix its name in --database-url or DATABASE_URL", cfg.Database)
	case sqlstateInvalidPassword, sqlstateInvalidAuthorization:
		return "check the user and password in --database-url or DATABASE_URL, or set PGPASSWORD"
	}
	return "PostgreSQL refused the connection; check --database-url or DATABASE_URL"
}

// describeTarget names the database a connection config points at, as
// user@host:port/db, without its password, for messages and logs.
func describeTarget(cfg *pgx.ConnConfig) string {
	return fmt.Sprintf("%s@%s/%s", cfg.User, net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port))), cfg.Database)
}

// maskedURL is the database a connection config points at as a URL with
// the password, if any, replaced by "xxxxx" (as net/url's Redacted does):
// what `converge migrate` prints so the operator sees which database it
// changed.
func maskedURL(cfg *pgx.ConnConfig) string {
	u := url.URL{Scheme: "postgres", Path: "/" + cfg.Database}
	switch {
	case cfg.Password != "":
		u.User = url.UserPassword(cfg.User, "xxxxx")
	case cfg.User != "":
		u.User = url.User(cfg.User)
	}
	if strings.HasPrefix(cfg.Host, "/") {
		// A Unix socket directory goes in the query, as libpq expects.
		u.RawQuery = url.Values{"host": {cfg.Host}}.Encode()
	} else {
		u.Host = net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))
	}
	return u.String()
}
