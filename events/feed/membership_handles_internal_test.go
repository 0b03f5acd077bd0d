package feed

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCoversIsSubsetWithAllForFilters: over random sets, a member covers
// another exactly when it handles each of the other's entries, where one
// without a filter (feed:all) handles every type and category but not a
// declared Handles entry.
func TestCoversIsSubsetWithAllForFilters(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	pool := []string{"type:a", "type:b", "category:c", "saga:x", "saga:x/on:a", "saga:y/timeout:t", handleAll}
	pick := func() []string {
		var out []string
		for _, p := range pool {
			if rng.IntN(2) == 0 {
				out = append(out, p)
			}
		}
		slices.Sort(out)
		return out
	}
	for i := range 2000 {
		have, want := pick(), pick()
		expect := true
		for _, w := range want {
			filter := strings.HasPrefix(w, "type:") || strings.HasPrefix(w, "category:")
			if !slices.Contains(have, w) && (!filter || !slices.Contains(have, handleAll)) {
				expect = false
			}
		}
		require.Equal(t, expect, covers(have, want), fmt.Sprintf("case %d: have %v want %v", i, have, want))
		require.True(t, covers(have, have))
		require.True(t, covers(have, nil))
	}
}

// TestHandlesOfIsTheFilterAndTheDeclared: a processor handles its types
// and categories (or everything, without a filter) plus Handles, once
// each, sorted.
func TestHandlesOfIsTheFilterAndTheDeclared(t *testing.T) {
	t.Parallel()
	require.Equal(t, []string{handleAll}, handlesOf(&ProcessorConfig{}))
	require.Equal(t, []string{"category:c", "saga:s", "type:a", "type:b"},
		handlesOf(&ProcessorConfig{Types: []string{"b", "a", "b"}, Categories: []string{"c"}, Handles: []string{"saga:s", "type:a"}}))
	require.Equal(t, []string{handleAll, "saga:s"}, handlesOf(&ProcessorConfig{Handles: []string{"saga:s"}}))
}

// TestHandlesRefusesWhatARowCannotHold: an empty entry, a control
// character, invalid UTF-8 or an entry over the limit is refused, naming
// the setting.
func TestHandlesRefusesWhatARowCannotHold(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "a\x00b", "a\nb", "\xff", strings.Repeat("h", MaxLeaseTextBytes+1)} {
		c := (&ProcessorConfig{Name: "p", Handles: []string{"fine", bad}}).withDefaults()
		err := c.validate()
		require.Error(t, err, "%q", bad)
		require.Contains(t, err.Error(), "ProcessorConfig.Handles")
	}
	c := (&ProcessorConfig{Name: "p", Handles: []string{"saga:x/on:order.placed", "é"}}).withDefaults()
	require.NoError(t, c.validate())
}
