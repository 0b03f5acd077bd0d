package pgstore

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
)

// TestPrefetchPlanProbesTheKey: the plan a connection keeps for a locked
// Prefetch probes the rows table's primary key once per address, and
// locks the rows after sorting them, so two units prefetching overlapping
// rows take their locks in the same order (one waits, neither deadlocks).
func TestPrefetchPlanProbesTheKey(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	_, err := db.Pool.Exec(ctx, `INSERT INTO rows (namespace, tbl, key, value, major, minor)
SELECT 'ns', 't' || (i % 5), 'k' || i, '{}', 1, 0 FROM generate_series(1, 20000) i`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `ANALYZE rows`)
	require.NoError(t, err)
	plan := genericPlan(t, db, newQueries(db.Schema).rowPrefetch[2], `ARRAY['ns', 'ns'], ARRAY['t1', 't2'], ARRAY['k1', 'k2']`)
	t.Log(plan)
	require.NotContains(t, plan, "Seq Scan on rows")
	require.Contains(t, plan, "rows_pkey")
	lock, sort := strings.Index(plan, "LockRows"), strings.Index(plan, "Sort")
	require.True(t, lock >= 0 && sort > lock, "rows are locked above (after) the sort")
}
