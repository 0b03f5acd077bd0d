package live_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/coder/websocket"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
)

func ExampleHub() {
	hub, err := live.NewHub(&live.Config{})
	if err != nil {
		panic(err)
	}
	srv := httptest.NewServer(hub.Handler())
	defer srv.Close()
	defer hub.Close()

	// A client follows order-1.
	ctx := context.Background()
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"?entity=order-1",
		&websocket.DialOptions{HTTPClient: srv.Client()})
	if resp != nil && resp.Body != nil {
		_ = resp.Body.Close() // nil on success; closed for form's sake
	}
	if err != nil {
		panic(err)
	}
	defer func() { _ = conn.CloseNow() }()

	// A projection runner, after its read-model transaction committed:
	hub.Publish("order-1", json.RawMessage(`{"id":"order-1","status":"paid"}`), events.MakeToken(1, 3))

	for range 2 {
		_, msg, err := conn.Read(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Println(string(msg))
	}
	// Output:
	// {"type":"subscribed","entity":"order-1"}
	// {"type":"updated","entity":"order-1","data":{"id":"order-1","status":"paid"},"position":"v2.----------3----------k"}
}

// ExampleConfig_snapshot serves a Hub beside its demo page, with a snapshot
// so a client that subscribes late still gets the row's current state; it
// is the package doc's example, end to end.
func ExampleConfig_snapshot() {
	// Stands in for the read model: the row and the position it reflects,
	// which a real Snapshot reads in one transaction.
	row := json.RawMessage(`{"id":"order-1","status":"pending"}`)
	rowPos := events.MakeToken(1, 1)
	readOrderRow := func(_ context.Context, id string) (json.RawMessage, events.Token, bool, error) {
		if id != "order-1" {
			return nil, events.Token{}, false, nil
		}
		return row, rowPos, true, nil
	}

	run := func(ctx context.Context) error {
		hub, err := live.NewHub(&live.Config{Snapshot: readOrderRow})
		if err != nil {
			return err
		}
		defer hub.Close()
		mux := http.NewServeMux()
		mux.Handle("/live", hub.Handler())
		mux.Handle("/live/page", live.PageHandler("/live")) // open /live/page?entity=order-1
		srv := httptest.NewServer(mux)
		defer srv.Close()

		conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+"/live?entity=order-1",
			&websocket.DialOptions{HTTPClient: srv.Client()})
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			return err
		}
		defer func() { _ = conn.CloseNow() }()

		// Read the acknowledgement and the snapshot before publishing, so
		// the output's order does not depend on timing.
		read := func() error {
			_, msg, err := conn.Read(ctx)
			if err == nil {
				fmt.Println(string(msg))
			}
			return err
		}
		if err := read(); err != nil {
			return err
		}
		if err := read(); err != nil {
			return err
		}

		// In the projection runner, once the transaction that wrote the
		// row has committed: the row, and the event that produced it.
		rowJSON := json.RawMessage(`{"id":"order-1","status":"confirmed"}`)
		env := events.Envelope{StreamID: "order-1", Version: 2, Token: events.MakeToken(1, 2)}
		hub.Publish("order-1", rowJSON, env.Token)
		return read()
	}
	if err := run(context.Background()); err != nil {
		panic(err)
	}
	// Output:
	// {"type":"subscribed","entity":"order-1"}
	// {"type":"updated","entity":"order-1","data":{"id":"order-1","status":"pending"},"position":"v2.----------3----------F","snapshot":true}
	// {"type":"updated","entity":"order-1","data":{"id":"order-1","status":"confirmed"},"position":"v2.----------3----------V"}
}
