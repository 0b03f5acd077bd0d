package projections_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestStrongAppendsUnderHeavyContentionNeverFail: many writers append, at
// once, events one strong projection handles. The doc promises that such
// appends commit one at a time (PostgreSQL waits; memory runs the append
// again), so no append fails with a conflict, and each effect lands once.
func TestStrongAppendsUnderHeavyContentionNeverFail(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			p := strongBalances("strong_heavy", new(atomic.Bool))
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})
			workers, per := 128, 10
			if f.db != nil {
				workers = 10 // the pool holds 12 connections
			}
			var wg sync.WaitGroup
			var failed atomic.Int64
			var firstErr atomic.Value
			for w := range workers {
				wg.Go(func() {
					for i := range per {
						_, err := f.store.Append(ctx, fmt.Sprintf("s-%d-%d", w, i), events.AnyVersion, events.Event{Data: Deposited{"a", 1}})
						if err != nil {
							failed.Add(1)
							firstErr.CompareAndSwap(nil, err)
						}
					}
				})
			}
			wg.Wait()
			require.Zero(t, failed.Load(), "appends failed: first %v", firstErr.Load())
			f.waitHead(t, "strong_heavy")
			a, ok := account(t, r, "strong_heavy", "a")
			require.True(t, ok)
			require.Equal(t, Account{Balance: workers * per, Count: workers * per}, a)
		})
	}
}
