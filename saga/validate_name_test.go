package saga_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// TestValidateNameFollowsItsRule checks ValidateName against its doc over
// random names: 1 to MaxNameLength bytes of lower-case letters, digits,
// '_', '.' and '-', starting with a letter or digit. New refuses exactly
// the names ValidateName refuses.
func TestValidateNameFollowsItsRule(t *testing.T) {
	t.Parallel()
	const alphabet = "az09_.-A/ é"
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 37))
		for range 200 {
			// Lengths around the limit as often as short ones, and mostly
			// valid characters, so both sides of each rule come up.
			n := []int{rng.IntN(6), saga.MaxNameLength - 2 + rng.IntN(5), rng.IntN(saga.MaxNameLength + 10)}[rng.IntN(3)]
			chars := []rune(alphabet)
			if rng.IntN(4) > 0 {
				chars = chars[:7]
			}
			var b strings.Builder
			for range n {
				b.WriteRune(chars[rng.IntN(len(chars))])
			}
			name := b.String()
			ok := name != "" && len(name) <= saga.MaxNameLength && strings.IndexByte("_.-", name[0]) < 0
			for _, r := range name {
				ok = ok && (r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || strings.ContainsRune("_.-", r))
			}
			err := saga.ValidateName(name)
			require.Equal(t, ok, err == nil, "seed %d: name %q: %v", seed, name, err)
			_, err = saga.NewSafely[orderState](name, nil)
			require.Equal(t, ok, err == nil, "seed %d: NewSafely(%q): %v", seed, name, err)
		}
	}
}

// TestHandleWithoutAUnitAndStartTwice: Handle called without a unit of
// work returns ErrNoUnit, and a second Start of a running engine fails.
func TestHandleWithoutAUnitAndStartTwice(t *testing.T) {
	t.Parallel()
	b := newBare(t, nil)
	env := b.append(t, "order-1", OrderPlaced{OrderID: "1"})
	require.ErrorIs(t, b.engine.Handle(context.Background(), env), saga.ErrNoUnit)
	require.ErrorIs(t, b.engine.Handle(events.ContextWithUnit(context.Background(), nil), env), saga.ErrNoUnit)
	ctx := context.Background()
	require.NoError(t, b.engine.Start(ctx))
	t.Cleanup(func() { require.NoError(t, b.engine.Stop(ctx)) })
	require.Error(t, b.engine.Start(ctx), "a second Start")
}
