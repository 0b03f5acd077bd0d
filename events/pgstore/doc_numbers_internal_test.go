package pgstore

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestDocumentedNumbersMatchTheConstants ties the figures the package doc
// (doc.go) states to the constants behind them, so that changing either
// without the other fails: heads remembered "for up to 8,192 streams"
// (streamHeadsMax; all of them remembered, never more), a stream
// "remembered as contended for two seconds", one failed statement "per
// two-second contended spell" (hotFor; contended up to that long after
// the lost race, not a nanosecond more), and "An append that lost 65 races
// in a row (it runs again 64 times) reports ErrUnavailable"
// (maxLostRaces, every new store's bound). The numbers are read from
// doc.go's text; the checks run on what it says.
func TestDocumentedNumbersMatchTheConstants(t *testing.T) {
	t.Parallel()
	doc := docText(t)

	heads := docNumber(t, doc, `remembers, for up to ([0-9,]+) streams`)
	require.Equal(t, streamHeadsMax, heads, "doc.go's stream heads figure and streamHeadsMax")
	var h streamHeads
	for i := range heads {
		h.committed(fmt.Sprint("s-", i), 1, 10)
	}
	for i := range heads {
		_, ok := h.guess(fmt.Sprint("s-", i))
		require.True(t, ok, "stream %d of %d is remembered", i, heads)
	}
	h.committed("one-more", 1, 10)
	require.Len(t, h.heads, heads, "never more than %d heads", heads)

	spell := docNumber(t, doc, `one failed statement per (\w+)-second contended spell`)
	contended := docNumber(t, doc, `remembered as contended for (\w+) seconds`)
	require.Equal(t, spell, contended, "doc.go gives one contended spell")
	require.Equal(t, time.Duration(spell)*time.Second, hotFor, "doc.go's contended spell and hotFor")
	var hot hotStreams
	now := time.Now()
	hot.mark("x", now)
	require.True(t, hot.has("x", now.Add(time.Duration(spell)*time.Second)), "contended for the whole spell")
	require.False(t, hot.has("x", now.Add(time.Duration(spell)*time.Second+time.Nanosecond)), "and no longer")

	lost := docNumber(t, doc, `An append that lost ([0-9,]+) races in a row`)
	again := docNumber(t, doc, `\(it runs again ([0-9,]+) times\)`)
	require.Equal(t, lost, again+1, "doc.go: the first run and the runs again are the races lost")
	require.Equal(t, again, maxLostRaces, "doc.go's runs again and maxLostRaces")
}

// docText is doc.go's comment text on one line: "//" markers dropped,
// lines joined by spaces, so a phrase can be matched across line breaks.
func docText(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	var words []string
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "//"); ok {
			words = append(words, strings.Fields(rest)...)
		}
	}
	return strings.Join(words, " ")
}

// docNumber returns the number pattern's one group matches in doc,
// written in figures (commas allowed) or as a word up to twelve.
func docNumber(t *testing.T, doc, pattern string) int {
	t.Helper()
	m := regexp.MustCompile(pattern).FindAllStringSubmatch(doc, -1)
	require.Len(t, m, 1, "doc.go says %q once", pattern)
	text := m[0][1]
	words := []string{"zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve"}
	for n, w := range words {
		if strings.EqualFold(text, w) {
			return n
		}
	}
	n, err := strconv.Atoi(strings.ReplaceAll(text, ",", ""))
	require.NoError(t, err, "doc.go's number %q", text)
	return n
}
