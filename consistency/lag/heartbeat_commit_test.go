package lag_test

import (
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestHeartbeatIsWhenTheHolderCommitted: the heartbeat age is "how long
// ago the projection's lease holder last renewed its lease or committed".
// A holder whose unit of work ran for a while (its transaction began at a
// locked read, as a saga step's does), renewed its lease during the unit
// and then committed has been heard from just now: its heartbeat age is
// about 0 and, with a backlog, it is not "stalled". On PostgreSQL the
// commit stamped the heartbeat with its transaction's start, over the
// renewal, and a live processor whose units run for a while (a saga's
// locked reads) read as stalled after each commit. The wait here is the
// subject: PostgreSQL stamps by the server's own clock.
func TestHeartbeatIsWhenTheHolderCommitted(t *testing.T) {
	t.Parallel()
	for kind, mk := range lagStores() {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			store, clock := mk(t)
			wait := time.Sleep
			var monClock events.Clock // PostgreSQL stamps by the server's (real) clock
			if kind == "memory" {
				wait, monClock = clock.Advance, clock
			}
			var toks []events.Token
			for i := range 3 {
				res, err := store.Append(ctx, fmt.Sprint("order-", i), events.NoStream, rawEvent(i))
				require.NoError(t, err)
				toks = append(toks, res.Token)
			}
			cps := store.Checkpoints()
			l, err := cps.Acquire(ctx, "orders", "runner-1", time.Hour)
			require.NoError(t, err)

			u, err := cps.Begin(ctx)
			require.NoError(t, err)
			// The handler locks the row it is about to change (a saga
			// step locks its instance): the unit's transaction begins.
			_, _, err = u.Rows().Get(u.Context(ctx), "app", "totals", "k", feed.LockUpdate)
			require.NoError(t, err)
			wait(1500 * time.Millisecond) // the handler works
			// The runner renews its lease meanwhile, as it does every third
			// of its TTL.
			require.NoError(t, cps.Renew(ctx, l, time.Hour))
			wait(100 * time.Millisecond)
			require.NoError(t, u.Commit(u.Context(ctx), feed.Move{Lease: l, Position: toks[0]}))

			mon, err := lag.NewMonitor(store, &lag.Config{
				Projections:    []lag.Target{{Name: "orders", SLA: time.Hour}},
				StaleHeartbeat: time.Second,
				Clock:          monClock,
				Logger:         slog.New(slog.DiscardHandler),
			})
			require.NoError(t, err)
			reports, err := mon.Check(ctx)
			require.NoError(t, err)
			r := reports[0]
			require.Equal(t, int64(2), r.PositionLag)
			require.Less(t, r.HeartbeatAge, 500*time.Millisecond,
				"the holder renewed 100ms ago and committed just now: %+v", r)
			require.False(t, r.Breached, "a live holder that just committed is not stalled: reason %q", r.Reason)
		})
	}
}
