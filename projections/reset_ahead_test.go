package projections_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestResetRefusesATokenAhead: a reset to a token after the projection's
// position (one from a later write, or from another database) is refused,
// through the API and when requested, and moves nothing: forward, the
// events in between would never be applied.
func TestResetRefusesATokenAhead(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{latestNames("ahead", nil)}})
			last := f.append(t, "acct-a", Renamed{"a", "one"})
			f.awaitStored(t, "ahead", last.Token)
			ahead := events.MakeToken(last.Token.Major()+1, 0)

			err := r.Reset(ctx, "ahead", ahead)
			require.ErrorIs(t, err, projections.ErrResetAhead)
			pos, err := f.source.Checkpoints().Position(ctx, "ahead")
			require.NoError(t, err)
			require.Equal(t, last.Token, pos, "nothing moved")

			q, err := projections.RequestReset(ctx, f.source, "ahead", ahead)
			require.NoError(t, err)
			done := awaitRequest(t, f, "ahead", q.ID)
			require.Equal(t, projections.RequestFailed, done.State)
			require.Contains(t, done.Error, "moves a projection back")

			f.append(t, "acct-a", Renamed{"a", "two"})
			f.waitHead(t, "ahead")
			requireRows(t, r.View("ahead").Table("names"), map[string]string{"a": "two"})
		})
	}
}
