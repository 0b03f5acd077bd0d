package lag_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// stepClock is a clock the example moves by hand.
type stepClock struct{ now time.Time }

func (c *stepClock) Now() time.Time { return c.now }

func Example() {
	ctx := context.Background()
	clock := &stepClock{now: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	store, err := memstore.New(&memstore.Config{Clock: clock})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	// Two projections have processed the first event.
	res, err := store.Append(ctx, "order-42", events.NoStream, events.Event{Data: events.Raw{Type: "order_placed", Payload: []byte(`{}`)}})
	if err != nil {
		panic(err)
	}
	for _, name := range []string{"order_summary", "sales_report"} {
		l, err := store.Checkpoints().Acquire(ctx, name, "runner-1", time.Minute)
		if err != nil {
			panic(err)
		}
		u, _ := store.Checkpoints().Begin(ctx)
		if err := u.Commit(ctx, feed.Move{Lease: l, Position: res.Token}); err != nil {
			panic(err)
		}
	}
	// Then a second event waits for 5s.
	if _, err := store.Append(ctx, "order-42", events.Exactly(1), events.Event{Data: events.Raw{Type: "order_shipped", Payload: []byte(`{}`)}}); err != nil {
		panic(err)
	}
	clock.now = clock.now.Add(5 * time.Second)

	mon, err := lag.NewMonitor(store, &lag.Config{
		Projections: []lag.Target{
			{Name: "order_summary", SLA: lag.UserFacingSLA},
			{Name: "sales_report", SLA: lag.AnalyticsSLA, Class: "analytics"},
		},
		OnBreach: func(b lag.Breach) {
			fmt.Printf("breach: %s is %s behind (SLA %s)\n", b.Report.Name, b.Report.TimeLag, b.Report.SLA)
		},
		Logger: slog.New(slog.DiscardHandler),
		Clock:  clock,
	})
	if err != nil {
		panic(err)
	}
	reports, err := mon.Check(ctx)
	if err != nil {
		panic(err)
	}
	if err := lag.Table(os.Stdout, reports); err != nil {
		panic(err)
	}
	// Output:
	// breach: order_summary is 5s behind (SLA 2s)
	// PROJECTION     CHECKPOINT                 BEHIND  TIME LAG  HEARTBEAT  SLA  STATUS
	// order_summary  v2.----------3----------F  1       5s        5s         2s   BREACH
	// sales_report   v2.----------3----------F  1       5s        5s         30s  ok
}
