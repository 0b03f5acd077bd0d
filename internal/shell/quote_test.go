package shell_test

import (
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/shell"
)

// TestQuoteAndWordAreWhatAShellReads: what sh makes of a quoted string,
// and of a word, is the string itself, over random text full of quotes,
// shell metacharacters and non-ASCII.
func TestQuoteAndWordAreWhatAShellReads(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	pieces := []string{"a", "Z", "9", "'", `"`, "$(x)", "`", ";", "&", "|", " ", "\t", "\\", "~", "*", "é", "-", "/", "%"}
	for range 40 {
		var b strings.Builder
		for range 1 + r.IntN(8) {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		s := b.String()
		for what, quoted := range map[string]string{"Quote": shell.Quote(s), "Word": shell.Word(s)} {
			got, err := exec.CommandContext(t.Context(), "sh", "-c", "printf %s "+quoted).Output()
			require.NoError(t, err, "seed %d: %s(%q) = %s", seed, what, s, quoted)
			require.Equal(t, s, string(got), "seed %d: %s(%q) = %s", seed, what, s, quoted)
		}
	}
	require.Equal(t, "github.com/a/b", shell.Word("github.com/a/b"), "a plain word stays as it is")
}
