package saga_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga/internal/drive"
)

// newPGBare returns a bare engine of the order saga on a PostgreSQL store
// of a schema of its own.
func newPGBare(t *testing.T, ctx context.Context) (*pgtest.DB, *pgstore.Store, bare) {
	t.Helper()
	db := pgtest.New(t, nil)
	store, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, Registry: registry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	return db, store, newBareOn(t, store, orderSaga(false))
}

// holdUnit runs fn in a unit of its own and keeps the unit open once fn
// has returned, until release is called; release ends the unit and
// returns its error.
func holdUnit(t *testing.T, ctx context.Context, store *pgstore.Store, fn func(ctx context.Context) error) (release func() error) {
	t.Helper()
	handled, hold := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- drive.Unit(ctx, store, 0, func(ctx context.Context) error {
			err := fn(ctx)
			close(handled)
			<-hold
			return err
		})
	}()
	select {
	case <-handled:
	case err := <-done:
		t.Fatalf("the unit ended before it was held: %v", err)
	}
	return func() error {
		close(hold)
		return <-done
	}
}

// lockWaits counts the statements of db's schema waiting on a lock.
func lockWaits(ctx context.Context, db *pgtest.DB) (int, error) {
	var n int
	err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND datname = current_database() AND strpos(query, $1) > 0`, db.Schema).Scan(&n)
	return n, err
}
