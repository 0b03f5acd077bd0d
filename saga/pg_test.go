package saga_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
)

func init() {
	storeMakers["postgres"] = pgStoreMaker(0)
	// Every scenario runs on a pool of a single connection too: nothing
	// that holds a unit's connection (a step, a gate behind the head of a
	// unit, a read-model read in a step) may wait for a second one, or a
	// pool smaller than the partitions deadlocks.
	storeMakers["postgres_one_connection"] = pgStoreMaker(1)
}

// pgStoreMaker makes stores on pools of maxConns connections (0: the
// test default).
func pgStoreMaker(maxConns int32) storeMaker {
	return func(t *testing.T, reg *events.Registry) saga.Store {
		t.Helper()
		db := pgtest.New(t, &pgtest.Config{MaxConns: maxConns})
		st, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
}
