package pgtest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// A new PostgreSQL session is a process fork on the server: on this
// project's two-core test machine about 50 ms of CPU each, and a full test
// run opened thousands. The statements of the tests' clean-ups (emptying
// or dropping a schema, ending a leaked session) therefore reuse a few
// connections per test process rather than each opening its own. They are
// plain connections on a free list, not a pool: an idle one runs no
// goroutine, so the tests' leak checks do not see them, and no statement
// holds a lock while it runs, so one clean-up blocked on a table lock does
// not hold up the others (it has a connection to itself meanwhile).
var admin struct {
	mu   sync.Mutex
	url  string
	free []*pgx.Conn
	// ended counts the schemas this process emptied or dropped since the
	// catalogs were last vacuumed.
	ended int
}

// withAdmin runs fn on a clean-up connection of the process, opening one
// when none is free.
func withAdmin(ctx context.Context, url string, fn func(*pgx.Conn) error) error {
	var conn *pgx.Conn
	admin.mu.Lock()
	if admin.url != url {
		for _, c := range admin.free {
			_ = c.Close(ctx)
		}
		admin.url, admin.free = url, nil
	}
	if n := len(admin.free); n > 0 {
		conn, admin.free = admin.free[n-1], admin.free[:n-1]
	}
	admin.mu.Unlock()
	if conn == nil || conn.IsClosed() {
		cfg, err := pgx.ParseConfig(url)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		cfg.RuntimeParams["application_name"] = "pgtest clean-up"
		// As on the tests' own connections (see New).
		cfg.RuntimeParams["synchronous_commit"] = "off"
		if conn, err = pgx.ConnectConfig(ctx, cfg); err != nil {
			return fmt.Errorf("connect: %w", err)
		}
	}
	err := fn(conn)
	if conn.IsClosed() || conn.PgConn().IsBusy() || conn.PgConn().TxStatus() != 'I' {
		// Cut off mid-statement (a deadline), or broken: not reusable.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = conn.Close(cctx)
		return err
	}
	admin.mu.Lock()
	if admin.url == url {
		admin.free = append(admin.free, conn)
		conn = nil
	}
	admin.mu.Unlock()
	if conn != nil {
		_ = conn.Close(ctx)
	}
	return err
}

// closeAdmin closes the clean-up connections, at the end of the process's
// tests.
func closeAdmin(ctx context.Context) {
	admin.mu.Lock()
	free := admin.free
	admin.free = nil
	admin.mu.Unlock()
	for _, c := range free {
		_ = c.Close(ctx)
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
