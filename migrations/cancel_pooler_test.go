package migrations_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgbouncertest"
	"github.com/converge-es/converge/migrations"
)

// countdownCtx is cancelled the n-th time somebody looks at Done: pgx looks
// before sending each statement, so some n cancel it between two
// statements of a run, the way a caller's deadline can expire.
type countdownCtx struct {
	context.Context
	n    atomic.Int64
	ch   chan struct{}
	once sync.Once
}

func (c *countdownCtx) Done() <-chan struct{} {
	if c.n.Add(-1) <= 0 {
		c.once.Do(func() { close(c.ch) })
	}
	return c.ch
}

func (c *countdownCtx) Err() error {
	select {
	case <-c.ch:
		return context.Canceled
	default:
		return nil
	}
}

// TestCancelledMigrateBehindAPoolerLeavesNoLock: a run whose ctx ends
// between two of its statements (pgx then sends neither the next one nor
// tern's unlock) leaves no session lock on the pooled server session it
// ran on, whichever statement it stopped before; a later Migrate, through
// the pooler or not, is not kept waiting.
func TestCancelledMigrateBehindAPoolerLeavesNoLock(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := pgbouncertest.Start(t, &pgbouncertest.Config{PoolSize: 2})
	pooled := openPool(t, b.URL+"&default_query_exec_mode=simple_protocol", 2)
	direct := openPool(t, b.DirectURL, 2)
	held := func() []string {
		rows, err := direct.Query(ctx, `SELECT format('pid %s %s granted=%s', pid, mode, granted) FROM pg_locks
		WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
		AND classid::int8 = $1 AND objid::int8 = $2 AND objsubid = 1`, ternLockKey>>32, ternLockKey&0xffffffff)
		require.NoError(t, err)
		h, err := pgx.CollectRows(rows, pgx.RowTo[string])
		require.NoError(t, err)
		return h
	}
	for n := int64(1); n < 120; n++ {
		c := &countdownCtx{Context: ctx, ch: make(chan struct{})}
		c.n.Store(n)
		_, err := migrations.Migrate(c, pooled, &migrations.Config{Schema: fmt.Sprintf("c%d", n)})
		if err == nil {
			t.Logf("n=%d: run finished before the cancel", n)
			break
		}
		var h []string
		deadline := time.Now().Add(3 * time.Second)
		for h = held(); len(h) > 0 && time.Now().Before(deadline); h = held() {
			// A session the pool closed ends on the server a moment later;
			// PostgreSQL signals nothing to wait on.
			time.Sleep(20 * time.Millisecond)
		}
		if len(h) > 0 {
			mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, merr := migrations.Migrate(mctx, direct, &migrations.Config{Schema: "later"})
			cancel()
			t.Logf("a later Migrate of another schema, not through the pooler: %v", merr)
			t.Fatalf("n=%d: Migrate returned %v and tern's session lock is still held behind the pooler: %v", n, err, h)
		}
	}
	// A later Migrate is not kept waiting.
	mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, err := migrations.Migrate(mctx, pooled, &migrations.Config{Schema: "after"})
	require.NoError(t, err)
}
