package migrations

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrateTo brings cfg's schema to version target, for upgrade tests.
func MigrateTo(ctx context.Context, pool *pgxpool.Pool, cfg *Config, target int32) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	return migrateTo(ctx, conn.Conn(), cfg.withDefaults().Schema, target)
}

// TernLockKey is the advisory lock key Migrate takes, tern's.
const TernLockKey = ternLockKey
