package converge_test

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/examples/orders"
)

// The README promises that its Go code compiles and runs: every Go block
// in it must be a slice of the runnable example in example_test.go, line
// for line (indentation aside), so the example's own test backs it.
func TestREADMEGoBlocksComeFromTheRunnableExample(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	example, err := os.ReadFile("example_test.go")
	require.NoError(t, err)
	exampleLines := trimmedLines(string(example))

	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	require.NotEmpty(t, blocks, "the README shows Go code")
	for _, b := range blocks {
		require.True(t, containsRun(exampleLines, trimmedLines(b[1])),
			"this README block is not in example_test.go; copy it from there (or update both):\n%s", b[1])
	}
}

// The README's read-model table is the order example's catalog, as
// consistency.Catalog renders it.
func TestREADMEReadModelTableIsTheCatalog(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	store, err := memstore.New(&memstore.Config{Registry: orders.NewRegistry()})
	require.NoError(t, err)
	defer store.Close()
	c, err := converge.NewClient(store, &converge.Config{Projections: orders.Projections()})
	require.NoError(t, err)
	require.Contains(t, string(readme), c.Catalog().MarkdownTable(),
		"regenerate the README's read-model table from the order example's catalog")
}

func trimmedLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// containsRun reports whether want appears in have as consecutive lines.
func containsRun(have, want []string) bool {
	for i := 0; i+len(want) <= len(have); i++ {
		match := true
		for j := range want {
			if have[i+j] != want[j] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}
