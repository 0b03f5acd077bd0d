package pgstore

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
)

// TestACountBeforeAHelloDoesNotUndoIt: a count of listeners whose query
// ran before a newcomer connected, and answers after its hello, does not
// undo the hello: the newcomer's wake-ups are sent, not held until the
// next count.
func TestACountBeforeAHelloDoesNotUndoIt(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, nil)
	n := newNotifier(db.Pool, nil, 0, db.Schema+"_nobody_listens")
	n.countListeners(ctx)
	require.False(t, n.others.Load(), "nobody listens on the schema")

	n.counted = func() { n.newcomer("e:hello") } // the hello lands while the count's query runs
	n.countListeners(ctx)
	require.True(t, n.others.Load(), "a count from before the hello undid it")
	n.counted = nil
	n.countListeners(ctx)
	require.False(t, n.others.Load(), "the next count decides")
}
