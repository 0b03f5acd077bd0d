package projections_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/projections"
)

// TestRebuildClearsTheOldGenerationsDeadLetters: an event dead-lettered by
// the live generation, applied by a rebuild once the handler is fixed, is
// no longer listed after the switch: a replay of it would be skipped (the
// new generation already reflects it), so the listing would say the event
// was never applied when it was.
func TestRebuildClearsTheOldGenerationsDeadLetters(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			poison := &poisoned{ids: map[string]bool{}}
			poison.broken.Store(true)
			f.append(t, "a", Deposited{"a", 1})
			bad := f.append(t, "a", Deposited{"a", 10})
			poison.ids[bad.EventIDs[0]] = true
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{ledger("dlr", 1, poison)},
				MaxAttempts: 1,
				OnFailure:   projections.DeadLetterOnFailure,
			})
			f.waitHead(t, "dlr")
			dls, err := r.DeadLetters(ctx, "dlr")
			require.NoError(t, err)
			require.Len(t, dls, 1)
			require.Equal(t, bad.EventIDs[0], dls[0].EventID)

			poison.broken.Store(false) // the handler is fixed: rebuild
			rctx, cancel := context.WithTimeout(ctx, waitTimeout)
			defer cancel()
			require.NoError(t, r.Rebuild(rctx, "dlr"))
			a, found := account(t, r, "dlr", "a")
			require.True(t, found)
			require.Equal(t, Account{Balance: 11, Count: 2}, a, "the new generation applied the dead-lettered event")

			after, err := r.DeadLetters(ctx, "dlr")
			require.NoError(t, err)
			require.Empty(t, after, "the old generation's dead letter is moot after the switch")
		})
	}
}
