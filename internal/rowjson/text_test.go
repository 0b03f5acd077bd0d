package rowjson_test

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/rowjson"
)

// TestTextIsWhatARowHolds: over random text and limits, Text holds no NUL,
// keeps text within the limit as it was (NUL as U+FFFD), and cuts longer
// text on a rune boundary to at most the limit, saying how long it was.
func TestTextIsWhatARowHolds(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	pieces := []string{"a", "\x00", "é", "€", "😀", "\n"}
	for range 2000 {
		var b strings.Builder
		for range rng.IntN(60) {
			b.WriteString(pieces[rng.IntN(len(pieces))])
		}
		s, limit := b.String(), rng.IntN(80)
		got := rowjson.Text(s, limit)
		require.NotContains(t, got, "\x00")
		require.True(t, utf8.ValidString(got))
		whole := strings.ReplaceAll(s, "\x00", "\uFFFD")
		if len(whole) <= limit {
			require.Equal(t, whole, got)
			continue
		}
		kept, rest, ok := strings.Cut(got, "… (")
		require.True(t, ok, got)
		require.LessOrEqual(t, len(kept), limit)
		require.True(t, strings.HasPrefix(whole, kept))
		require.Equal(t, strconv.Itoa(len(whole))+" bytes in all)", rest)
	}
}
