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
	conn, idle := takeAdmin(url)
	for {
		if conn == nil {
			var err error
			if conn, err = openAdmin(ctx, url); err != nil {
				return err
			}
			idle = false
		}
		err := fn(conn)
		if !conn.IsClosed() && !conn.PgConn().IsBusy() && conn.PgConn().TxStatus() == 'I' {
			putAdmin(url, conn)
			return err
		}
		// Cut off mid-statement (a deadline), or broken: not reusable.
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = conn.Close(cctx)
		cancel()
		if err == nil || !idle || ctx.Err() != nil {
			return err
		}
		// A connection the server ended while it sat on the free list (a
		// test that terminated sessions, a restart) only fails at its
		// first use: once more, on a new one.
		conn = nil
	}
}

// takeAdmin takes a free clean-up connection, if there is one for url.
func takeAdmin(url string) (conn *pgx.Conn, idle bool) {
	admin.mu.Lock()
	defer admin.mu.Unlock()
	if admin.url != url {
		for _, c := range admin.free {
			_ = c.Close(context.Background())
		}
		admin.url, admin.free = url, nil
	}
	n := len(admin.free)
	if n == 0 {
		return nil, false
	}
	conn, admin.free = admin.free[n-1], admin.free[:n-1]
	return conn, true
}

func openAdmin(ctx context.Context, url string) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	cfg.RuntimeParams["application_name"] = "pgtest clean-up"
	// As on the tests' own connections (see New).
	cfg.RuntimeParams["synchronous_commit"] = "off"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	return conn, nil
}

// putAdmin puts conn back on the free list.
func putAdmin(url string, conn *pgx.Conn) {
	admin.mu.Lock()
	if admin.url == url {
		admin.free = append(admin.free, conn)
		conn = nil
	}
	admin.mu.Unlock()
	if conn != nil {
		_ = conn.Close(context.Background())
	}
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
