package pgstore

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestFilteredReadTouchesOnlyAPage: a consumer filtered by types (or
// categories) reads each value's range of its index from the cursor, at
// most a page of each, and merges them, so a read far behind the head
// costs a page, not everything after the cursor. Read with "type =
// ANY(...)", PostgreSQL fetched every later event of those types and
// sorted them for each page: a consumer catching up on N events did
// O(N²) work. The check counts the rows the plan's scans of the events
// table actually read, for types and categories that are rare among
// the events after the cursor (where the old form fetched them all).
func TestFilteredReadTouchesOnlyAPage(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	_, err := db.Pool.Exec(ctx, `INSERT INTO events (sort_key, event_id, stream_id, version, type, payload, category)
SELECT i, gen_random_uuid(), 's-' || i, 1, CASE i % 20 WHEN 0 THEN 'a' WHEN 1 THEN 'b' WHEN 2 THEN 'c' ELSE 'z' END, '{"n": 1}',
	CASE WHEN i % 20 < 2 THEN 't' ELSE 's' END FROM generate_series(1, 6000) i`)
	require.NoError(t, err)
	_, err = db.Pool.Exec(ctx, `ANALYZE events`)
	require.NoError(t, err)
	q := newQueries(db.Schema)
	const limit = 10
	for name, f := range map[string]feed.Filter{
		"types":      {Types: []string{"a", "b"}},
		"one type":   {Types: []string{"c"}},
		"categories": {Categories: []string{"t", "u"}},
		"everything": {},
	} {
		where, by, fargs := filterClause(f, 4)
		for _, pending := range []bool{false, true} {
			sql := `EXPLAIN (ANALYZE, FORMAT JSON) ` + q.readFeedSQL(where, by, pending)
			var out []byte
			require.NoError(t, db.Pool.QueryRow(ctx, sql, append([]any{int64(0), int64(0), limit}, fargs...)...).Scan(&out))
			var plan []struct {
				Plan planNode `json:"Plan"`
			}
			require.NoError(t, json.Unmarshal(out, &plan), string(out))
			rows := plan[0].Plan.eventRows()
			// A page of each value, the newest readable row, and slack
			// for rows a scan reads past its limit.
			require.LessOrEqual(t, rows, float64((len(f.Types)+len(f.Categories)+1)*limit+5),
				"%s (pending %v): the scans of events read %v rows for a page of %d; plan:\n%s", name, pending, rows, limit, out)
		}
	}
}

type planNode struct {
	Relation string     `json:"Relation Name"`
	Rows     float64    `json:"Actual Rows"`
	Filtered float64    `json:"Rows Removed by Filter"`
	Rechecks float64    `json:"Rows Removed by Index Recheck"`
	Loops    float64    `json:"Actual Loops"`
	Plans    []planNode `json:"Plans"`
}

// eventRows sums the rows that scans of the events table read: those
// they returned and those their filters dropped.
func (n planNode) eventRows() float64 {
	var sum float64
	if n.Relation == "events" {
		sum += (n.Rows + n.Filtered + n.Rechecks) * n.Loops
	}
	for _, c := range n.Plans {
		sum += c.eventRows()
	}
	return sum
}
