package lag_test

import (
	"bufio"
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// The package doc's usage: a started Monitor with its metrics served at
// /metrics, over two projections that have caught up with the feed.
func ExampleNewMonitor() {
	ctx := context.Background()
	store, err := memstore.New(nil)
	if err != nil {
		panic(err)
	}
	defer store.Close()
	res, err := store.Append(ctx, "order-42", events.NoStream, events.Event{Data: events.Raw{Type: "order_placed", Payload: []byte(`{}`)}})
	if err != nil {
		panic(err)
	}
	// Both projections have processed it.
	for _, name := range []string{"order_summary", "sales_report"} {
		l, err := store.Checkpoints().Acquire(ctx, name, "runner-1", time.Minute)
		if err != nil {
			panic(err)
		}
		u, err := store.Checkpoints().Begin(ctx)
		if err != nil {
			panic(err)
		}
		if err := u.Commit(ctx, feed.Move{Lease: l, Position: res.Token}); err != nil {
			panic(err)
		}
	}
	mux := http.NewServeMux()

	run := func() error {
		reg := prometheus.NewRegistry() // the Monitor's own (see Config.Registerer)
		mon, err := lag.NewMonitor(store, &lag.Config{
			Projections: []lag.Target{
				{Name: "order_summary", SLA: lag.UserFacingSLA},
				{Name: "sales_report", SLA: lag.AnalyticsSLA, Class: "analytics"},
			},
			Registerer: reg,
			OnBreach:   func(b lag.Breach) { log.Printf("page someone: %s breaches its SLA", b.Report.Name) },
		})
		if err != nil {
			return err
		}
		if err := mon.Start(ctx); err != nil {
			return err
		}
		defer func() { _ = mon.Stop(context.Background()) }()
		mux.Handle("/metrics", lag.Handler(reg))

		// A pass now, rather than at the Monitor's next tick; then scrape.
		if _, err := mon.Check(ctx); err != nil {
			return err
		}
		srv := httptest.NewServer(mux)
		defer srv.Close()
		resp, err := srv.Client().Get(srv.URL + "/metrics")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		lines := bufio.NewScanner(resp.Body)
		for lines.Scan() {
			if l := lines.Text(); strings.HasPrefix(l, lag.MetricSLA) || strings.HasPrefix(l, lag.MetricBreached+"{") ||
				strings.HasPrefix(l, lag.MetricPositionLag) {
				fmt.Println(l)
			}
		}
		return lines.Err()
	}
	if err := run(); err != nil {
		panic(err)
	}
	// Output:
	// converge_projection_position_lag_events{projection="order_summary"} 0
	// converge_projection_position_lag_events{projection="sales_report"} 0
	// converge_projection_sla_breached{projection="order_summary"} 0
	// converge_projection_sla_breached{projection="sales_report"} 0
	// converge_projection_sla_seconds{projection="order_summary"} 2
	// converge_projection_sla_seconds{projection="sales_report"} 30
}
