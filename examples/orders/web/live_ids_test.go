package web_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/examples/orders/web"
)

// TestLiveIgnoresIDsNoOrderCanHave: a live subscription to an id the API
// refuses (a control character in it) reads nothing from the read model,
// which would refuse the key and have the hub log a server failure; a
// good id subscribed after it gets its snapshot.
func TestLiveIgnoresIDsNoOrderCanHave(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	id, _, err := b.orders.Place(t.Context(), web.PlaceOrder{CustomerID: "c-1", SKU: "tea", Qty: 1})
	require.NoError(t, err)
	b.orders.Apply()
	var gets atomic.Int64
	b.orders.mu.Lock()
	b.orders.onGet = func() { gets.Add(1) }
	b.orders.mu.Unlock()

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	q := url.Values{"entity": {"a\x01b", id}}
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(b.url, "http")+web.PathLive+"?"+q.Encode(), &websocket.DialOptions{HTTPClient: b.client})
	require.NoError(t, err)
	if resp.Body != nil {
		_ = resp.Body.Close()
	}
	defer func() { _ = conn.CloseNow() }()
	for {
		_, data, err := conn.Read(ctx)
		require.NoError(t, err, "no snapshot of %s came", id)
		var m struct {
			Type     string `json:"type"`
			Entity   string `json:"entity"`
			Snapshot bool   `json:"snapshot"`
		}
		require.NoError(t, json.Unmarshal(data, &m))
		require.NotEqual(t, "error", m.Type, "%s", data)
		if m.Snapshot {
			require.Equal(t, id, m.Entity)
			break
		}
	}
	require.Equal(t, int64(1), gets.Load(), "only the good id was read")
}
