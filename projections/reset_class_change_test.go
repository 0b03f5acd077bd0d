package projections_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestResetAppliesAgainWhatWasAppliedWhileStrong: events the append hook
// applied while a projection was strong are applied again by a Reset made
// after the projection became eventual (their marks do not make its
// processor skip them).
func TestResetAppliesAgainWhatWasAppliedWhileStrong(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var reject atomic.Bool
			strong := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{strongBalances("was_strong", &reject)}})
			require.NoError(t, strong.Start(ctx))
			for range 3 {
				f.append(t, "acct-1", Deposited{"a", 10})
			}
			stop(t, strong)

			eventual := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("was_strong", nil)}})
			f.waitHead(t, "was_strong")
			a, _ := account(t, eventual, "was_strong", "a")
			require.Equal(t, 3, a.Count, "the marked events were applied once, inline")
			require.NoError(t, eventual.Reset(ctx, "was_strong", events.Token{}))
			f.awaitStored(t, "was_strong", f.head(t))
			a, _ = account(t, eventual, "was_strong", "a")
			require.Equal(t, 6, a.Count, "the reset applied them again")
		})
	}
}
