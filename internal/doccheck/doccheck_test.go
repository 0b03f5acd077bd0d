package doccheck

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPackageDocGoBlocksAreCompiledByTheirTests walks the module's doc.go
// files and checks each Go block of their comments against the test files
// beside them.
func TestPackageDocGoBlocksAreCompiledByTheirTests(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	checked := 0
	var missing []string
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != root {
			return filepath.SkipDir
		}
		if d.IsDir() || d.Name() != "doc.go" {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		tests, err := testLines(filepath.Dir(path))
		if err != nil {
			return err
		}
		for _, b := range docBlocks(string(src)) {
			if !isGo(b) {
				continue
			}
			checked++
			want := trimmed(b)
			if !slices.ContainsFunc(tests, func(lines []string) bool { return containsRun(lines, want) }) {
				missing = append(missing, path+":\n"+strings.Join(b, "\n"))
			}
		}
		return nil
	})
	require.NoError(t, err)
	require.Positive(t, checked, "no Go block found in any doc.go: is the walk looking in the right place?")
	require.Empty(t, missing, "these Go blocks of package docs are in no test file of their directory; make each a slice of a runnable Example there (or change it to match one)")
}

// docBlocks returns the code blocks of a doc comment: runs of lines that
// begin with "//" and a tab, a line with "//" alone inside a run kept as
// a blank line.
func docBlocks(src string) [][]string {
	var blocks [][]string
	var cur []string
	flush := func() {
		for len(cur) > 0 && strings.TrimSpace(cur[len(cur)-1]) == "" {
			cur = cur[:len(cur)-1]
		}
		if len(cur) > 0 {
			blocks = append(blocks, cur)
		}
		cur = nil
	}
	for l := range strings.SplitSeq(src, "\n") {
		switch {
		case strings.HasPrefix(l, "//\t"):
			cur = append(cur, strings.TrimPrefix(l, "//\t"))
		case l == "//" && cur != nil:
			cur = append(cur, "")
		default:
			flush()
		}
	}
	flush()
	return blocks
}

// isGo reports whether the block parses as Go: declarations, or
// statements in a function body.
func isGo(block []string) bool {
	code := strings.Join(block, "\n")
	fset := token.NewFileSet()
	if _, err := parser.ParseFile(fset, "", "package p\n"+code, 0); err == nil {
		return true
	}
	_, err := parser.ParseFile(fset, "", "package p\nfunc _() {\n"+code+"\n}", 0)
	return err == nil
}

// testLines returns the trimmed non-blank lines of each test file in dir.
func testLines(dir string) ([][]string, error) {
	names, err := filepath.Glob(filepath.Join(dir, "*_test.go"))
	if err != nil {
		return nil, err
	}
	out := make([][]string, 0, len(names))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			return nil, err
		}
		out = append(out, trimmed(strings.Split(string(b), "\n")))
	}
	return out, nil
}

func trimmed(lines []string) []string {
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

// containsRun reports whether want occurs in lines as a contiguous run.
func containsRun(lines, want []string) bool {
	for i := 0; i+len(want) <= len(lines); i++ {
		if slices.Equal(lines[i:i+len(want)], want) {
			return true
		}
	}
	return false
}
