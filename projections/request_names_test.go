package projections_test

import (
	"context"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestRequestsForNamesNoProjectionCanHave: RequestRebuild and RequestReset
// of a name no projection can have (empty, with control characters, past
// the row key limit), or of SQL-looking text, fail with ErrNotRegistered,
// as the docs say of a projection no runner ever started, on both stores.
func TestRequestsForNamesNoProjectionCanHave(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, seed))
			f := b.setup(t)
			ctx := context.Background()
			names := []string{"", strings.Repeat("x", 5000), "orders'; DROP TABLE rows; --"}
			for range 10 {
				// A name with a control character somewhere.
				n := []byte("proj_" + accountName(rng.IntN(100)))
				n[rng.IntN(len(n))] = byte(rng.IntN(0x20))
				names = append(names, string(n))
			}
			for _, name := range names {
				_, err := projections.RequestRebuild(ctx, f.source, name)
				require.ErrorIs(t, err, projections.ErrNotRegistered, "rebuild of %q", name)
				_, err = projections.RequestReset(ctx, f.source, name, events.Token{})
				require.ErrorIs(t, err, projections.ErrNotRegistered, "reset of %q", name)
			}
		})
	}
}
