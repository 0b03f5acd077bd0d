package projections_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestRebuildReportsOnlyTheSwitch: OnUpdate reports changes of the active
// generation only. A rebuild's writes, made to a generation nobody reads
// yet, are not reported; its switch is, once, as UpdateReplaced with the
// new generation and the token it reflects. Changes after the switch are
// reported with the new generation.
func TestRebuildReportsOnlyTheSwitch(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			var (
				mu      sync.Mutex
				updates []projections.Update
			)
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{balances("rebuilt", nil)},
				OnUpdate: func(u projections.Update) {
					mu.Lock()
					defer mu.Unlock()
					updates = append(updates, u)
				},
			})
			// The switch, and a commit a tracker read from the store, are visible before their OnUpdate calls ran.
			reported := func(n int) {
				t.Helper()
				require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(updates) >= n }, waitTimeout, time.Millisecond)
			}
			var last events.AppendResult
			for i := range 6 {
				last = f.append(t, "account-1", Deposited{"a1", i + 1})
			}
			f.waitFor(t, last.Token, "rebuilt")
			reported(6)
			mu.Lock()
			require.Len(t, updates, 6, "one change per deposit")
			updates = nil
			mu.Unlock()

			require.NoError(t, r.Rebuild(context.Background(), "rebuilt"))
			reported(1)
			mu.Lock()
			require.Len(t, updates, 1, "the rebuild's own writes are not reported: %+v", updates)
			require.Equal(t, projections.UpdateReplaced, updates[0].Kind)
			require.Equal(t, 2, updates[0].Generation)
			require.False(t, updates[0].Token.Before(last.Token), "the new generation reflects every deposit")
			updates = nil
			mu.Unlock()

			res := f.append(t, "account-1", Deposited{"a1", 100})
			f.waitFor(t, res.Token, "rebuilt")
			reported(1)
			mu.Lock()
			defer mu.Unlock()
			require.Len(t, updates, 1)
			require.Equal(t, projections.UpdatePut, updates[0].Kind)
			require.Equal(t, 2, updates[0].Generation)
			require.Equal(t, res.Token, updates[0].Token)
		})
	}
}
