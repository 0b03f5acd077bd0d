package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestProjectionsResetRefusesATokenAfterTheHead: `projections reset --to`
// a token after the head of the feed (from another database or schema)
// is refused up front, naming the head and what to pass, with nothing
// recorded; it was accepted, and only the running application failed it
// (projections.ErrResetAhead). A token at the head is accepted.
func TestProjectionsResetRefusesATokenAfterTheHead(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupOps(t)
	b.broken.Store(false)
	r := b.start(t, projections.RunnerConfig{Projections: []*projections.Projection{b.projection("ops_ahead")}})
	b.deposit(t, "a", 1)
	last := b.deposit(t, "b", 2)
	b.awaitCaughtUp(t, r, "ops_ahead")
	stopRunner(t, r)
	schema := b.conn[len(b.conn)-1]

	beyond := events.MakeToken(1<<62, 0)
	out, err := b.cli(t, "projections", "reset", "ops_ahead", "--to", beyond.String())
	require.ErrorIs(t, err, projections.ErrResetAhead)
	require.ErrorContains(t, err, "reset ops_ahead: --to "+beyond.String()+` is after the head of the feed in schema "`+schema+`" (`+last.Token.String()+")")
	require.ErrorContains(t, err, "pass a token at or before the head")
	require.Empty(t, out)
	_, ok, err := projections.ReadRequest(ctx, b.store.Rows(), "ops_ahead")
	require.NoError(t, err)
	require.False(t, ok, "nothing recorded")

	out, err = b.cli(t, "projections", "reset", "ops_ahead", "--to", last.Token.String())
	require.NoError(t, err)
	require.Contains(t, out, "accepted: reset of ops_ahead to "+last.Token.String())
}
