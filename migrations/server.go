package migrations

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
)

// MinServerVersionNum is the oldest PostgreSQL converge runs on, as
// server_version_num reports it: 13. The feed reads its read horizon with
// pg_current_snapshot and stamps events with pg_current_xact_id, both new
// in PostgreSQL 13; on an older server the first feed read would fail with
// "function does not exist".
const MinServerVersionNum = 130000

// QueryRower is what CheckServer asks: a *pgx.Conn, a *pgxpool.Pool or a
// pgx.Tx.
type QueryRower interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// CheckServer returns an error saying what to do when the server db talks
// to is older than MinServerVersionNum. Migrate checks it before changing
// anything, and pgstore.New before it starts.
func CheckServer(ctx context.Context, db QueryRower) error {
	var num int
	var version string
	err := db.QueryRow(ctx, "SELECT current_setting('server_version_num')::int, current_setting('server_version')").Scan(&num, &version)
	if err != nil {
		return fmt.Errorf("read the server's version: %w (is PostgreSQL reachable?)", err)
	}
	return serverVersionError(num, version)
}

func serverVersionError(num int, version string) error {
	if num >= MinServerVersionNum {
		return nil
	}
	return fmt.Errorf("converge needs PostgreSQL 13 or later (its feed uses pg_current_snapshot and pg_current_xact_id); this server is %s: upgrade it, or point converge at a newer one", version)
}
