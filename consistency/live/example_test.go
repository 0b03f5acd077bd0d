package live_test

import (
	"context"
	"encoding/json"
	"fmt"
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
