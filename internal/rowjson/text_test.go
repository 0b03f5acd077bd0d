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
// keeps text within the limit as it was (NUL and invalid UTF-8 as U+FFFD),
// and cuts longer text on a rune boundary to at most the limit, saying how
// long it was.
func TestTextIsWhatARowHolds(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	for range 2000 {
		s, limit := randomText(rng, 60), rng.IntN(80)
		got := rowjson.Text(s, limit)
		if _, kept, cut := checkCut(t, s, got, limit); cut {
			require.LessOrEqual(t, len(kept), limit)
		}
	}
}

// randomText is up to n pieces of text, NUL and multi-byte runes among them.
func randomText(rng *rand.Rand, n int) string {
	pieces := []string{"a", "\x00", "é", "€", "😀", "\n", "\xff", "\xe2\x82"}
	var b strings.Builder
	for range rng.IntN(n) {
		b.WriteString(pieces[rng.IntN(len(pieces))])
	}
	return b.String()
}

// checkCut checks what Text and TextWithin share: got holds no NUL, is
// valid UTF-8, and is s (NUL and invalid UTF-8 as U+FFFD) when that fits in limit, else a
// prefix of it followed by the note of its full size. It returns s with
// U+FFFD, the prefix kept, and whether s was cut.
func checkCut(t *testing.T, s, got string, limit int) (whole, kept string, cut bool) {
	t.Helper()
	require.NotContains(t, got, "\x00")
	require.True(t, utf8.ValidString(got))
	whole = strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
	if len(whole) <= limit {
		require.Equal(t, whole, got)
		return whole, got, false
	}
	kept, rest, ok := strings.Cut(got, "… (")
	require.True(t, ok, got)
	require.True(t, strings.HasPrefix(whole, kept))
	require.Equal(t, strconv.Itoa(len(whole))+" bytes in all)", rest)
	return whole, kept, true
}

// TestTextWithinCountsItsNote: over random text and limits, TextWithin is
// Text except that a cut text, note included, is at most the limit (when
// the limit leaves room for the note), and keeps as much of the text as
// that allows.
func TestTextWithinCountsItsNote(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	for range 2000 {
		s, limit := randomText(rng, 200), rng.IntN(300)
		got := rowjson.TextWithin(s, limit)
		whole, kept, cut := checkCut(t, s, got, limit)
		if !cut {
			continue
		}
		note := len(got) - len(kept)
		if limit >= note {
			require.LessOrEqual(t, len(got), limit, "seed %d", seed)
			// As much as fits: the next rune would not.
			next := len(kept)
			if next < len(whole) {
				_, size := utf8.DecodeRuneInString(whole[next:])
				require.Greater(t, next+size+note, limit, "seed %d: %q cut short at %d", seed, whole, limit)
			}
		} else {
			require.Empty(t, kept)
		}
	}
}
