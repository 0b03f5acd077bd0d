package web_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/examples/orders/web"
)

// FuzzPlaceOrder checks the promise of POST /orders for any body: a 202
// for a valid order, else a 4xx problem+json, never a 5xx and never an
// order placed from a refused body.
func FuzzPlaceOrder(f *testing.F) {
	for _, s := range []string{
		`{"customer_id":"c-1","sku":"tea","qty":2,"card":"4242-4242-4242-4242"}`, `{}`, ``, `[]`, `null`, `{"customer_id":"c-1","sku":"tea","qty":1e1,"card":"4242-4242-4242-4242"}`,
		`{"customer_id":"c-1","sku":"tea","qty":2,"card":"4242-4242-4242-4242"}{}`, `{"customer_id":"\u0000","sku":"tea","qty":1,"card":"4242-4242-4242-4242"}`, `{"qty":-1}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		tr, err := consistency.NewTracker(nil)
		require.NoError(t, err)
		orders := newFakeOrders(tr)
		s, err := web.New(&web.Config{Orders: orders, Tracker: tr, ReadModels: []string{readModel}, MaxBodyBytes: 512, Logger: discardLogger()})
		require.NoError(t, err)
		defer s.Close()
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)

		var cmd web.PlaceOrder
		dec := json.NewDecoder(strings.NewReader(body))
		dec.DisallowUnknownFields()
		valid := len(body) <= 512 && dec.Decode(&cmd) == nil && !dec.More() && cmd.Validate() == nil
		switch rec.Code {
		case http.StatusAccepted:
			require.True(t, valid, "placed from body %q, which is not a valid order", body)
			require.Len(t, orders.log, 1)
		default:
			require.GreaterOrEqual(t, rec.Code, 400, "body %q", body)
			require.Less(t, rec.Code, 500, "body %q: %s", body, rec.Body)
			require.Equal(t, consistency.ContentTypeProblem, rec.Header().Get("Content-Type"))
			require.Empty(t, orders.log, "a refused body placed an order")
		}
	})
}

// FuzzGetOrder checks that no order id or token makes GET /orders/{id}
// fail with a 5xx.
func FuzzGetOrder(f *testing.F) {
	f.Add("o-1", "")
	f.Add("a b", "v1.AAAAAAAAAAEAAAAAAAAAAQ") // an old format version
	f.Add("o-1", "v2.----------3----------F")
	f.Add("%00", "garbage")
	f.Fuzz(func(t *testing.T, id, token string) {
		tr, err := consistency.NewTracker(nil)
		require.NoError(t, err)
		s, err := web.New(&web.Config{Orders: newFakeOrders(tr), Tracker: tr, ReadModels: []string{readModel}, Logger: discardLogger()})
		require.NoError(t, err)
		defer s.Close()
		req, err := http.NewRequest(http.MethodGet, "http://x/orders/"+id, nil)
		if err != nil {
			return // not a URL a client could send
		}
		req.Header.Set(consistency.HeaderPosition, token)
		req.Header.Set(consistency.HeaderTimeout, "0")
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)
		require.Less(t, rec.Code, 500, "id %q token %q: %s", id, token, rec.Body)
	})
}
