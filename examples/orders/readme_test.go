package orders_test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestREADMEGoBlocksComeFromTheCode: every Go block of this directory's
// README is a run of consecutive lines (indentation aside) of one of the
// package's Go files, which the build and the tests compile, as the root
// README's blocks are of the root example (readme_test.go there). A block
// that differs shows code the package does not have.
func TestREADMEGoBlocksComeFromTheCode(t *testing.T) {
	t.Parallel()
	readme, err := os.ReadFile("README.md")
	require.NoError(t, err)
	files, err := filepath.Glob("*.go")
	require.NoError(t, err)
	code := map[string][]string{}
	for _, f := range files {
		if f == "readme_test.go" {
			continue // this test, which holds no code of the README's
		}
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		code[f] = readmeLines(string(b))
	}
	require.Contains(t, code, "app.go")

	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllStringSubmatch(string(readme), -1)
	require.NotEmpty(t, blocks, "the README shows Go code")
	for _, b := range blocks {
		want := readmeLines(b[1])
		require.NotEmpty(t, want)
		found := false
		for _, have := range code {
			if containsLines(have, want) {
				found = true
				break
			}
		}
		require.True(t, found, "this README block is in none of %v; copy it from the code:\n%s\nthe closest code (app.go from the block's first line):\n%s",
			files, b[1], closest(code["app.go"], want))
	}
}

func readmeLines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// containsLines reports whether want appears in have as consecutive lines.
func containsLines(have, want []string) bool {
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

// closest returns the lines of have from the first one equal to want's
// first line, as many as want has plus a few, for the failure message.
func closest(have, want []string) string {
	for i, l := range have {
		if l == want[0] {
			return strings.Join(have[i:min(len(have), i+len(want)+3)], "\n")
		}
	}
	return "(no line of app.go equals the block's first line)"
}
