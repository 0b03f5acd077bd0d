package pgtest

import (
	"context"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"
)

// A new PostgreSQL session is a process fork on the server: on this
// project's two-core test machine about 50 ms of CPU each, and a full test
// run opened thousands. The statements of the tests' clean-ups (emptying
// or dropping a schema, ending a leaked session) therefore share one
// connection per test process rather than each opening its own. It is a
// plain connection, not a pool: it runs no goroutine while idle, so the
// tests' leak checks do not see it.
var admin struct {
	mu   sync.Mutex
	url  string
	conn *pgx.Conn
	// ended counts the schemas this process emptied or dropped since the
	// catalogs were last vacuumed.
	ended int
}

// withAdmin runs fn on the process's clean-up connection, opening it when
// there is none (or it broke), one caller at a time.
func withAdmin(ctx context.Context, url string, fn func(*pgx.Conn) error) error {
	admin.mu.Lock()
	defer admin.mu.Unlock()
	if admin.conn != nil && (admin.url != url || admin.conn.IsClosed()) {
		_ = admin.conn.Close(ctx)
		admin.conn = nil
	}
	if admin.conn == nil {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		cfg.RuntimeParams["application_name"] = "pgtest clean-up"
		conn, err := pgx.ConnectConfig(ctx, cfg)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		admin.url, admin.conn = url, conn
	}
	err := fn(admin.conn)
	if err != nil && admin.conn.PgConn().IsBusy() {
		// Cut off mid-statement (a deadline): not reusable.
		_ = admin.conn.Close(ctx)
		admin.conn = nil
	}
	return err
}

// closeAdmin closes the clean-up connection, at the end of the process's
// tests.
func closeAdmin(ctx context.Context) {
	admin.mu.Lock()
	defer admin.mu.Unlock()
	if admin.conn != nil {
		_ = admin.conn.Close(ctx)
		admin.conn = nil
	}
}

// vacuumEvery is how many schemas a process empties or drops between two
// vacuums of the catalogs.
const vacuumEvery = 40

// catalogs are the system catalogs that creating, truncating and dropping
// schemas leave dead rows in.
const catalogs = `pg_catalog.pg_class, pg_catalog.pg_attribute, pg_catalog.pg_depend, pg_catalog.pg_type,
	pg_catalog.pg_index, pg_catalog.pg_constraint, pg_catalog.pg_attrdef, pg_catalog.pg_trigger,
	pg_catalog.pg_sequence, pg_catalog.pg_namespace`

// schemaEnded counts a schema emptied or dropped, and every vacuumEvery
// of them vacuums the catalogs. A server whose autovacuum is off (as on
// the machine these tests were tuned on) otherwise collects hundreds of
// thousands of dead catalog rows in a day of test runs, which every new
// session then scans past as it loads its catalog caches. A role that may
// not vacuum the catalogs only gets warnings; any error is ignored, as the
// vacuum is an optimisation.
func schemaEnded(ctx context.Context, url string) {
	admin.mu.Lock()
	admin.ended++
	due := admin.ended >= vacuumEvery
	if due {
		admin.ended = 0
	}
	admin.mu.Unlock()
	if !due {
		return
	}
	_ = withAdmin(ctx, url, func(conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "VACUUM "+catalogs)
		return err
	})
}
