package saga

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// TestReachedTrustsTheGateOnlyForTheTokenItWaitedFor: the runtime's gate
// waits for the causal token it read without a lock; the step needs the
// one read under the instance's lock, which can be later (another
// partition's message for the instance committed in between). A gate
// outcome counts only when it covers the models and waited for at least
// that token; otherwise what the Tracker knows now decides, so a step
// never runs on a model older than its causal token. Tokens, positions
// and outcomes are drawn at random.
func TestReachedTrustsTheGateOnlyForTheTokenItWaitedFor(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	models := []string{"summary", "stock"}
	for round := range 500 {
		tr, err := consistency.NewTracker(nil)
		require.NoError(t, err)
		e := &Engine{cfg: EngineConfig{Tracker: tr}} // reached reads the Tracker alone
		tok := func() events.Token { return events.MakeToken(1, uint64(1+rng.IntN(20))) }
		need := tok()
		known := map[string]events.Token{}
		for _, m := range models {
			if rng.IntN(4) > 0 {
				known[m] = tok()
				tr.Advance(m, known[m])
			}
		}
		g := gateOutcome{gated: rng.IntN(4) > 0, reached: rng.IntN(3) > 0, token: tok(), models: models[:rng.IntN(3)]}
		trackerSays := true
		for _, m := range models {
			if pos, ok := known[m]; !ok || pos.Before(need) {
				trackerSays = false
			}
		}
		gateSays := g.gated && g.reached && !g.token.Before(need) && len(g.models) == len(models)
		msg := fmt.Sprintf("round %d: need %s, gate %+v, tracker %v", round, need, g, known)
		require.Equal(t, gateSays || trackerSays, e.reached(g, need, models), msg)
		if !trackerSays && g.token.Before(need) {
			require.False(t, e.reached(g, need, models), "a gate that waited for an older token proves nothing: %s", msg)
		}
	}
}
