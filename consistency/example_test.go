package consistency_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// A write returns a token; a read waits until its read model has reached
// it, or answers stale at the deadline.
func Example() {
	ctx := context.Background()
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{
		MaxTimeout: 50 * time.Millisecond,
		Logger:     slog.New(slog.DiscardHandler),
	})
	if err != nil {
		panic(err)
	}
	if err := tr.Start(ctx); err != nil {
		panic(err)
	}
	defer func() { _ = tr.Stop(ctx) }()

	written := events.MakeToken(1, 42) // what the append returned

	// The projection applies the event a moment later and reports it.
	go tr.Advance("order_summary", written)

	st, err := tr.Wait(ctx, written, "order_summary")
	if err != nil {
		panic(err)
	}
	fmt.Println("after own write: stale =", st.Stale)

	// A token the projection never reaches: the wait gives up at the
	// deadline and says so, without failing.
	st, err = tr.Wait(ctx, events.MakeToken(1, 43), "order_summary")
	if err != nil {
		panic(err)
	}
	fmt.Println("ahead of projection: stale =", st.Stale, "reason =", st.Reason)

	// Output:
	// after own write: stale = false
	// ahead of projection: stale = true reason = deadline
}

func ExampleRead() {
	ctx := context.Background()
	tr, err := consistency.NewTracker(nil)
	if err != nil {
		panic(err)
	}
	defer func() { _ = tr.Stop(ctx) }()
	tr.Advance("order_summary", events.MakeToken(1, 7))

	res, err := consistency.Read(ctx, tr, events.MakeToken(1, 7), []string{"order_summary"},
		func(context.Context) (string, error) { return "order 7: placed", nil })
	if err != nil {
		panic(err)
	}
	fmt.Println(res.Value, "| stale:", res.Stale)

	// Output:
	// order 7: placed | stale: false
}

func ExampleMiddleware() {
	ctx := context.Background()
	tr, err := consistency.NewTracker(nil)
	if err != nil {
		panic(err)
	}
	defer func() { _ = tr.Stop(ctx) }()

	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		pos := events.MakeToken(1, 1)    // append the event...
		tr.Advance("order_summary", pos) // ...the projection applies it...
		consistency.SetPosition(w, pos)  // ...and the client gets the token
		w.WriteHeader(http.StatusAccepted)
	})
	reads := consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"order_summary"}})
	mux.Handle("GET /orders", reads(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "1 order")
	})))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	write, err := srv.Client().Post(srv.URL+"/orders", "application/json", nil)
	if err != nil {
		panic(err)
	}
	_ = write.Body.Close()

	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/orders", nil)
	req.Header.Set(consistency.HeaderPosition, write.Header.Get(consistency.HeaderPosition))
	read, err := srv.Client().Do(req)
	if err != nil {
		panic(err)
	}
	defer read.Body.Close()
	body, _ := io.ReadAll(read.Body)
	fmt.Println(string(body), "| stale:", read.Header.Get(consistency.HeaderStale))

	bad, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/orders?consistency_position=v3.AAAAAAAAAAAAAAAAAAAAAA", nil)
	resp, err := srv.Client().Do(bad)
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	fmt.Println(resp.StatusCode, resp.Header.Get("Content-Type"))

	// Output:
	// 1 order | stale: false
	// 400 application/problem+json
}

func ExampleCatalog_MarkdownTable() {
	var c consistency.Catalog
	c.Register(consistency.ReadModel{
		Name: "order_summary", Class: consistency.Eventual, SLA: 2 * time.Second,
		Description: "Orders with their totals",
	})
	c.Register(consistency.ReadModel{
		Name: "stream_versions", Class: consistency.Strong,
		Description: "Stream heads, written with the events",
	})
	fmt.Print(c.MarkdownTable())

	// Output:
	// | Read model | Consistency | SLA | Description |
	// |---|---|---|---|
	// | `order_summary` | eventual | 2s | Orders with their totals |
	// | `stream_versions` | strong | — | Stream heads, written with the events |
}
