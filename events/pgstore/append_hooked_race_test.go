package pgstore_test

import (
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// TestHookedAppendsOfTheSameEventsAtOnceReturnTheOriginal: appending
// events that are already stored returns the original result, however
// the appends meet. An append a hook wants (a strong read model, say)
// runs in a unit of its own, whose statement checks the ids first; an
// identical append committed after that check ends the statement in a
// unique violation. Both calls must still succeed with the same result,
// one of them AlreadyStored, never ErrDuplicateEvent (which is for ids
// reused for other events). Expectations, batch sizes and how many
// callers race are random.
func TestHookedAppendsOfTheSameEventsAtOnceReturnTheOriginal(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 23))
	b := setup(t, nil, 20)
	defer b.store.AddAppendHook(everyAppendHook{})()
	ctx := t.Context()
	for round := range 60 {
		stream := "order-" + uuid.NewString()
		evs := rawEvents(1 + rng.IntN(3))
		for i := range evs {
			evs[i].ID = uuid.NewString()
		}
		expected := []events.ExpectedVersion{events.AnyVersion, events.NoStream}[rng.IntN(2)]
		callers := 2 + rng.IntN(3)
		results := make([]events.AppendResult, callers)
		errs := make([]error, callers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for c := range callers {
			wg.Go(func() {
				<-start
				results[c], errs[c] = b.store.Append(ctx, stream, expected, evs...)
			})
		}
		close(start)
		wg.Wait()
		stored := 0
		for c := range callers {
			require.NoError(t, errs[c], "round %d: caller %d of %d appending the same %d events", round, c, callers, len(evs))
			if !results[c].AlreadyStored {
				stored++
			}
			require.Equal(t, results[0].Tokens, results[c].Tokens, "round %d: every caller gets the original result", round)
			require.Equal(t, results[0].LastVersion, results[c].LastVersion)
		}
		require.Equal(t, 1, stored, "round %d: one caller stored them, the others found them stored", round)
		requireStream(t, b.store, stream, int64(len(evs)), results[0])
	}
}
