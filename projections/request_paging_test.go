package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// TestRequestsPastOnePageAreServed: "every running Runner looks for
// requests on each pass of its monitor" and one that has the projection
// carries it out, however many request rows other projections left in
// RequestsTable (one per projection ever requested, kept until replaced):
// a request whose projection sorts after a full page of them
// (feed.DefaultRowLimit rows) is served too.
func TestRequestsPastOnePageAreServed(t *testing.T) {
	t.Parallel()
	f := newMemFixture(t)
	ctx := context.Background()
	// Finished requests of other projections, retired or run elsewhere,
	// all sorting before this runner's.
	u, err := f.source.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	for i := range feed.DefaultRowLimit {
		q := projections.Request{ID: "old", Projection: fmt.Sprintf("old_%04d", i), Op: projections.OpRebuild, State: projections.RequestDone}
		b, err := json.Marshal(q)
		require.NoError(t, err)
		require.NoError(t, u.Rows().Put(ctx, feed.RuntimeNamespace, projections.RequestsTable, q.Projection, b, events.Token{}))
	}
	require.NoError(t, u.Commit(ctx))

	r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("zz_late", nil)}})
	f.append(t, "acct-a", Deposited{"a", 3})
	f.waitHead(t, "zz_late")
	q, err := projections.RequestRebuild(ctx, f.source, "zz_late")
	require.NoError(t, err)
	done := awaitRequest(t, f, "zz_late", q.ID)
	require.Equal(t, projections.RequestDone, done.State, done.Error)
	st, err := r.Status(ctx, "zz_late")
	require.NoError(t, err)
	require.Equal(t, 2, st.Generation, "the requested rebuild was not made")
}
