package saga_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
)

func init() {
	storeMakers["postgres"] = pgStoreMaker(&pgtest.Config{})
	// Every scenario also runs on a pool of a single connection that
	// sends its statements as text, unprepared. Nothing that holds a
	// unit's connection (a step, a gate behind the head of a unit, a
	// read-model read in a step) may wait for a second one, or a pool
	// smaller than the partitions deadlocks; and nothing may send a value
	// pgx can only encode in binary, or a pooler that needs the simple
	// protocol refuses the engine. Both once failed; one variant checks
	// both, to keep the suite's time down.
	storeMakers["postgres_one_simple_connection"] = pgStoreMaker(&pgtest.Config{MaxConns: 1, ExecMode: pgx.QueryExecModeSimpleProtocol})
}

// pgStoreMaker makes stores on pools made with cfg.
func pgStoreMaker(cfg *pgtest.Config) storeMaker {
	return func(t *testing.T, reg *events.Registry) saga.Store {
		t.Helper()
		db := pgtest.New(t, cfg)
		st, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
}
