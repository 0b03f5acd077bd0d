package saga_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestStepHistoryLargerThanARowCommits guards saga/doc.go (One unit per
// step): "A step's history is written as one row, or as several when it
// records more than a row holds (hundreds of commands, thousands of
// timers)." One step sends 200 commands whose payloads are all quotes (so
// each history entry's detail, cut at 4 KiB, doubles again as JSON: about
// 8 KiB an entry, past a row's 1 MiB in all) and schedules 2,000 timers.
// It commits, its history takes more than one row, and its timeline lists
// every command and timer in order.
func TestStepHistoryLargerThanARowCommits(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		const nCmd, nTimer = 200, 2000
		text := strings.Repeat(`"`, 2100)
		s := saga.New[orderState]("big_history", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			for i := range nTimer {
				st.Schedule(fmt.Sprint("t", i), time.Hour)
			}
			for i := range nCmd {
				if err := st.Send(NotifyCustomer{OrderID: e.OrderID, Text: fmt.Sprint(i, text)}); err != nil {
					return err
				}
			}
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		fx.When(sagatest.Event{Stream: "order-big", Data: OrderPlaced{OrderID: "big", Total: 1}})
		fx.ExpectStatus("big_history", "big", saga.StatusRunning)
		require.Len(t, fx.Commands(), nCmd)

		rows, err := fx.Store().Rows().List(context.Background(), "converge.saga", "history", feed.RowQuery{Prefix: "big_history/big/", Limit: 10000})
		require.NoError(t, err)
		require.Greater(t, len(rows), 1, "the step's history is more than a row holds, so it takes several")

		tl := fx.History("big_history", "big")
		require.Equal(t, nCmd, countKind(tl, saga.KindCommandSent))
		require.Equal(t, nTimer, countKind(tl, saga.KindTimerScheduled))
		for i := 1; i < len(tl.History); i++ {
			require.Less(t, tl.History[i-1].Seq, tl.History[i].Seq, "history in order")
		}
	})
}
