package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/projections"
)

// TestNamesGivenTwiceAreRefused: every command that takes several names
// refuses one given twice, before connecting, with exit status 1 and
// nothing on standard output, as `converge lag` does: `projections status
// X X` listed X twice, and `dead-letters replay ID ID` asked for the same
// replay twice and counted it twice.
func TestNamesGivenTwiceAreRefused(t *testing.T) {
	t.Parallel()
	b := setupOps(t)
	b.broken.Store(false)
	r := b.start(t, projections.RunnerConfig{Projections: []*projections.Projection{b.projection("ops_twice"), b.projection("ops_once")}})
	b.deposit(t, "a", 1)
	b.awaitCaughtUp(t, r, "ops_twice")
	with := func(args ...string) []string { return append(args, b.conn...) }

	refusedOnce(t, `projections status: projection "ops_twice" is named twice`, with("projections", "status", "ops_twice", "ops_twice")...)
	refusedOnce(t, `projections status: projection "ops_twice" is named twice`, with("projections", "status", "ops_twice", "ops_once", "ops_twice", "--json")...)
	refusedOnce(t, `dead-letters replay: dead letter ID "ops_twice/e1" is named twice`, with("dead-letters", "replay", "ops_twice/e1", "ops_twice/e1", "--wait")...)
	refusedOnce(t, `projection "ops_twice" is named twice`, with("lag", "ops_twice", "ops_twice=3s")...)

	// Each name once: listed once each.
	out, err := b.cli(t, "projections", "status", "ops_twice", "ops_once", "--json")
	require.NoError(t, err)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 2, out)
	require.Len(t, statusJSON(t, out), 2, out)
}
