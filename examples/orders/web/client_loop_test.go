package web_test

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders/web"
)

// seedLoop is the seed's client: POST the order, then GET it with the
// write's token every pause (200 ms in the seed) until response.ok, at
// most 20 times. It returns the last response and every status it saw.
// The pause is the client's own pacing, not a wait on the server: the
// tests' fake read model lags by a count of reads, so they pass 0.
func seedLoop(t *testing.T, get func(tok events.Token) response, tok events.Token, pause time.Duration) (response, []response) {
	t.Helper()
	var seen []response
	for range 20 {
		r := get(tok)
		seen = append(seen, r)
		if r.status >= 200 && r.status < 300 { // response.ok
			return r, seen
		}
		time.Sleep(pause)
	}
	return response{}, seen
}

func TestSeedClientLoop_EndsHoldingTheOrderAfterTheWrite(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// lagGets is how many reads find the read model behind before it
		// catches up.
		lagGets int32
	}{
		{"read model in step", 0},
		{"read model lags three reads", 3},
		{"read model lags eight reads", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b := setup(t, nil)
			// A lagging read model: it applies what was written only when
			// the lagGets-th read has come and gone.
			var gets atomic.Int32
			b.orders.onGet = func() {
				if gets.Add(1) > tc.lagGets {
					b.orders.Apply()
				}
			}
			get := func(tok events.Token) response { return b.get(t, "/orders/o-001", withToken(tok)) }

			// A placed order: the loop must end with it in the read model.
			id, tok := b.place(t, "c-1", 2)
			require.Equal(t, "o-001", id)
			if tc.lagGets == 0 {
				b.orders.Apply()
			}
			last, seen := seedLoop(t, get, tok, 0)
			require.Equal(t, http.StatusOK, last.status, "the loop gave up after %d reads", len(seen))
			v := last.json(t)
			require.Equal(t, id, v["order_id"])
			pos, err := events.ParseToken(as[string](t, v["position"]))
			require.NoError(t, err)
			require.False(t, pos.Before(tok), "the order it holds is from before the write")
			for _, r := range seen[:len(seen)-1] {
				require.Equal(t, http.StatusNotFound, r.status, "a read before the read model caught up")
				require.Equal(t, "true", r.header.Get(consistency.HeaderStale))
			}
			if tc.lagGets > 0 {
				require.Greater(t, len(seen), 1, "the read model did lag")
			}

			// A second write to the same order (its cancellation): the read
			// model has the order, but from before this write. The loop
			// must not stop on the older state.
			gets.Store(0)
			tok2 := b.orders.SetStatus(id, web.StatusCancelled, "payment declined")
			if tc.lagGets == 0 {
				b.orders.Apply()
			}
			last, seen = seedLoop(t, get, tok2, 0)
			require.Equal(t, http.StatusOK, last.status)
			require.Equal(t, web.StatusCancelled, last.json(t)["status"])
			require.Equal(t, "payment declined", last.json(t)["reason"])
			for _, r := range seen[:len(seen)-1] {
				require.Equal(t, http.StatusServiceUnavailable, r.status)
				require.Equal(t, "true", r.header.Get(consistency.HeaderStale))
				require.True(t, strings.Contains(string(r.body), `"status":"pending"`), "a stale answer carries the older state: %s", r.body)
			}
		})
	}
}
