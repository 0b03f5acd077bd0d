package main

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// docCommandLines are the converge command lines the docs show: the
// README's code blocks and inline code, the package doc's examples, and
// every command's Long and Example texts, each with where it comes from.
func docCommandLines(t *testing.T) map[string]string {
	t.Helper()
	lines := map[string]string{}
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	inBlock := false
	for _, l := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(l, "```") {
			inBlock = !inBlock
			continue
		}
		if inBlock && regexp.MustCompile(`(^|\s|/)converge\s`).MatchString(l) {
			lines[l] = "README.md"
		}
	}
	for _, m := range regexp.MustCompile("`((?:go run ./cmd/)?converge [^`]*)`").FindAllStringSubmatch(string(readme), -1) {
		lines[m[1]] = "README.md"
	}
	doc, err := os.ReadFile("doc.go")
	require.NoError(t, err)
	for _, l := range strings.Split(string(doc), "\n") {
		if strings.HasPrefix(l, "//\tconverge ") {
			lines[strings.TrimPrefix(l, "//\t")] = "doc.go"
		}
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		// Long texts show commands indented, apart from their prose.
		for _, l := range strings.Split(c.Long, "\n") {
			if strings.HasPrefix(l, "  converge ") {
				lines[strings.TrimSpace(l)] = c.CommandPath() + " --help"
			}
		}
		for _, l := range strings.Split(c.Example, "\n") {
			if l = strings.TrimSpace(l); l != "" {
				lines[l] = c.CommandPath() + " --help"
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	return lines
}

// commandArgs turns a documented line into the argument lists it stands
// for: shell comments and what follows "||" dropped, [optional] parts
// kept, a|b alternatives expanded, "ID..." taken as one ID.
func commandArgs(line string) [][]string {
	line, _, _ = strings.Cut(line, " #")
	line, _, _ = strings.Cut(line, " || ")
	fields := strings.Fields(strings.NewReplacer("[", "", "]", "", "...", "").Replace(line))
	start := -1
	for i, f := range fields {
		if f == "converge" || strings.HasSuffix(f, "/converge") {
			start = i + 1
			break
		}
	}
	if start < 0 {
		return nil
	}
	out := [][]string{{}}
	for _, f := range fields[start:] {
		if f == "" {
			continue
		}
		var next [][]string
		for _, alt := range strings.Split(f, "|") {
			for _, args := range out {
				next = append(next, append(append([]string{}, args...), alt))
			}
		}
		out = next
	}
	return out
}

// placeholder is a value written for the reader to fill in: URL, NAME, R,
// $URL.
var placeholder = regexp.MustCompile(`^(\$?[A-Z_]+|\$[A-Za-z_]+)$`)

// samples stand for a placeholder, by the flag's type; strings take the
// placeholder as it is.
var samples = map[string]string{"int": "1", "intSlice": "1", "uint64": "1", "duration": "1s", "float64": "1"}

// TestDocumentedCommandLinesParse: every converge command line the docs
// show names a command that exists and flags it has, with values of the
// right type (placeholders stand for any), and the scenarios and statuses
// they name exist.
func TestDocumentedCommandLinesParse(t *testing.T) {
	t.Parallel()
	lines := docCommandLines(t)
	require.Greater(t, len(lines), 30, "the docs show many command lines")
	for line, where := range lines {
		t.Run(line, func(t *testing.T) {
			t.Parallel()
			checkCommandLine(t, where, line)
		})
	}
}

// checkCommandLine checks one documented line, from where.
func checkCommandLine(t *testing.T, where, line string) {
	t.Helper()
	for _, args := range commandArgs(line) {
		what := where + ": " + line + " → " + strings.Join(args, " ")
		root := newRootCmd()
		root.InitDefaultVersionFlag()
		cmd, rest, err := root.Find(args)
		require.NoError(t, err, what)
		cmd.InitDefaultHelpFlag()
		for i := 0; i < len(rest); i++ {
			a := rest[i]
			if !strings.HasPrefix(a, "--") {
				require.False(t, cmd.HasSubCommands(), "%s: %q is not a command of %s", what, a, cmd.CommandPath())
				continue
			}
			name, _, hasValue := strings.Cut(strings.TrimPrefix(a, "--"), "=")
			f := cmd.Flags().Lookup(name)
			if f == nil {
				f = cmd.InheritedFlags().Lookup(name)
			}
			require.NotNil(t, f, "%s: %s has no flag --%s", what, cmd.CommandPath(), name)
			if hasValue || f.Value.Type() == "bool" || i+1 == len(rest) {
				continue
			}
			i++
			if sample, ok := samples[f.Value.Type()]; ok && placeholder.MatchString(rest[i]) {
				rest[i] = sample
			}
			switch cmd.CommandPath() + " --" + name {
			case "converge bench --scenario":
				require.Contains(t, benchScenarios, rest[i], what)
			case "converge sagas list --status":
				require.True(t, validStatus(saga.Status(rest[i])), what)
			}
		}
		require.NoError(t, cmd.ParseFlags(rest), what)
	}
}

// helpToken finds what reads as a consistency token in help text: the
// format's prefix and characters of the token alphabet.
var helpToken = regexp.MustCompile(`(?:^|[^0-9A-Za-z_.-])(` + regexp.QuoteMeta(events.TokenPrefix) + `[-0-9A-Za-z_]+)`)

// TestHelpTokensParse: every token any command's help shows (Short, Long,
// Example, flag usage) is one converge takes. `projections reset --help`
// showed v2.AAAAAAAAAAEAAAAAAAAAAA, which --to refuses (its last
// character has bits set that no token has).
func TestHelpTokensParse(t *testing.T) {
	t.Parallel()
	found := 0
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		texts := []string{c.Short, c.Long, c.Example}
		c.Flags().VisitAll(func(f *pflag.Flag) { texts = append(texts, f.Usage, f.DefValue) })
		for _, text := range texts {
			for _, m := range helpToken.FindAllStringSubmatch(text, -1) {
				found++
				_, err := events.ParseToken(m[1])
				require.NoError(t, err, "`%s --help` shows the token %s", c.CommandPath(), m[1])
			}
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(newRootCmd())
	require.Positive(t, found, "projections reset --help shows a token")
	require.Equal(t, [][]string{{" v2.AAAAAAAAAAEAAAAAAAAAAA", "v2.AAAAAAAAAAEAAAAAAAAAAA"}},
		helpToken.FindAllStringSubmatch("--to v2.AAAAAAAAAAEAAAAAAAAAAA --wait", -1), "the pattern finds the token reset showed")
}
