package lag_test

import (
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestUnseededPartitionsStandAtTheStart: when a split processor's earlier
// partition count lacks a partition that never ran, the feed seeds no new
// partition (their start would be the start of the feed), so a current
// partition with no checkpoint stands at the start of the feed, named or
// listed, however far the earlier partitions that did run got.
func TestUnseededPartitionsStandAtTheStart(t *testing.T) {
	t.Parallel()
	for name, mk := range lagStores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			store, clock := mk(t)
			var last events.Token
			for i := range 5 {
				clock.Advance(time.Second)
				res, err := store.Append(ctx, "order-x", events.AnyVersion, rawEvent(i))
				require.NoError(t, err)
				last = res.Token
			}
			commitAt(t, store.Checkpoints(), feed.PartitionName("p", 0, 2), last) // p#1/2 never ran
			u, err := store.Checkpoints().Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, u.Rows().Put(u.Context(ctx), feed.RuntimeNamespace, feed.ProcessorsTable, "p",
				json.RawMessage(`{"partitions":4}`), events.Token{}))
			require.NoError(t, u.Commit(u.Context(ctx)))
			clock.Advance(time.Minute)
			for _, cfg := range []*lag.Config{{}, {Projections: []lag.Target{{Name: "p"}}}} {
				cfg.Clock, cfg.Logger = clock, slog.New(slog.DiscardHandler)
				m, err := lag.NewMonitor(store, cfg)
				require.NoError(t, err)
				rs, err := m.Check(ctx)
				require.NoError(t, err)
				require.Len(t, rs, 1)
				require.True(t, rs[0].Checkpoint.IsZero(), "named %v: reported at %s, behind %d", len(cfg.Projections) > 0, rs[0].Checkpoint, rs[0].PositionLag)
				require.Equal(t, int64(5), rs[0].PositionLag, "every event is behind")
			}
		})
	}
}
