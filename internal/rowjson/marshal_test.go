package rowjson_test

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/rowjson"
)

// TestMarshalMeansWhatJSONMarshalMeans: over random strings (HTML
// characters, quotes, control characters, any rune), Marshal decodes to
// the same value as json.Marshal, is never longer, and holds no \u003c,
// \u003e or \u0026 escapes.
func TestMarshalMeansWhatJSONMarshalMeans(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	pieces := []rune{'<', '>', '&', '"', '\\', 0, '\n', 'a', 'é', '€', 0x2028, '😀'}
	for range 1000 {
		rs := make([]rune, rng.IntN(40))
		for i := range rs {
			if rng.IntN(4) == 0 {
				rs[i] = rune(rng.IntN(0x11000))
			} else {
				rs[i] = pieces[rng.IntN(len(pieces))]
			}
		}
		v := map[string]any{"s": string(rs), "n": rng.Int64()}
		got, err := rowjson.Marshal(v)
		require.NoError(t, err)
		want, err := json.Marshal(v)
		require.NoError(t, err)
		var a, b any
		require.NoError(t, json.Unmarshal(got, &a))
		require.NoError(t, json.Unmarshal(want, &b))
		require.Equal(t, b, a)
		require.LessOrEqual(t, len(got), len(want))
		require.NotContains(t, string(got), `\u003c`)
		require.NotContains(t, string(got), `\u0026`)
	}
}
