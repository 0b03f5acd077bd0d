package projections_test

import (
	"context"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/projections"
)

// TestKeysWithControlCharactersAreInvalidKeys: a table name or key holding
// a control character the row store refuses (C0, C1, U+2028, U+2029) is
// refused by the projection with ErrInvalidKey before it reaches the
// store, on both stores, wherever the character stands; printable text
// beside it is read fine.
func TestKeysWithControlCharactersAreInvalidKeys(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	controls := []rune{0x01, 0x1f, 0x7f, 0x80, 0x85, 0x9b, 0x9f, 0x2028, 0x2029}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, uint64(len(b.name))))
			f := b.setup(t)
			ctx := context.Background()
			r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("ctl", nil)}})
			with := func(s string) string {
				at := rng.IntN(len(s) + 1)
				return s[:at] + string(controls[rng.IntN(len(controls))]) + s[at:]
			}
			for range 30 {
				_, err := r.View("ctl").Table("accounts").Get(ctx, "acct-é", new(Account))
				require.NoError(t, err, "printable text is a key")
				key := with("acct-42")
				_, err = r.View("ctl").Table("accounts").Get(ctx, key, new(Account))
				require.ErrorIs(t, err, projections.ErrInvalidKey, "key %q", key)
				table := with("accounts")
				_, err = r.View("ctl").Table(table).Get(ctx, "a", new(Account))
				require.ErrorIs(t, err, projections.ErrInvalidKey, "table %q", table)
			}
		})
	}
}
