package live_test

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

// TestHub_URLEntityIsSubscribedOrRefused: an entity named in the URL is
// either subscribed before the upgrade response or, when its query pair
// cannot be decoded (a bad %-escape, a ';', which url.ParseQuery drops
// without a word), refused before the upgrade with 400 problem details
// naming the parameter. It is never left out of a connection that is
// upgraded anyway.
func TestHub_URLEntityIsSubscribedOrRefused(t *testing.T) {
	t.Parallel()
	hub, b := setup(t, nil)

	// requireRefused dials with rawQuery and checks the refusal.
	requireRefused := func(t *testing.T, rawQuery string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
		defer cancel()
		conn, resp, err := websocket.Dial(ctx, b.wsURL+"?"+rawQuery, &websocket.DialOptions{HTTPClient: b.server.Client()})
		if err == nil {
			defer func() { _ = conn.CloseNow() }()
			rctx, rcancel := context.WithTimeout(t.Context(), time.Second)
			defer rcancel()
			_, msg, rerr := conn.Read(rctx)
			t.Fatalf("query %q: upgraded (stats %+v), first message %s, read error %v", rawQuery, hub.Stats(), msg, rerr)
		}
		require.NotNil(t, resp, "query %q: dial error %v", rawQuery, err)
		body := readBody(t, resp)
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "query %q: body %s", rawQuery, body)
		require.Equal(t, consistency.ContentTypeProblem, resp.Header.Get("Content-Type"), "query %q", rawQuery)
		var p consistency.Problem
		require.NoError(t, json.Unmarshal([]byte(body), &p), "query %q: body %s", rawQuery, body)
		require.Equal(t, "entity", p.Parameter, "query %q: %+v", rawQuery, p)
		require.Contains(t, p.Detail, "query parameter entity", "query %q", rawQuery)
	}
	// requireSubscribed dials with rawQuery and checks every one of
	// entities is acknowledged, in order, before anything else.
	requireSubscribed := func(t *testing.T, rawQuery string, entities []string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), ioTimeout)
		defer cancel()
		conn, resp, err := websocket.Dial(ctx, b.wsURL+"?"+rawQuery, &websocket.DialOptions{HTTPClient: b.server.Client()})
		closeBody(resp)
		require.NoError(t, err, "query %q", rawQuery)
		defer func() { _ = conn.CloseNow() }()
		for _, e := range entities {
			readType(t, conn, "subscribed", e)
		}
	}

	for _, raw := range []string{
		"entity=order;1", "entity=order%ZZ1", "entity=order-1;x=y", "x=y;entity=order-1",
		"entity=order-1&entity=order%2", "entity%ZZ=order-1", "entity%=order-1",
		"entity=order-1&entity=order;2", "entity;=order-1", "entity=%",
	} {
		t.Run(raw, func(t *testing.T) { requireRefused(t, raw) })
	}

	// Pairs naming other parameters are the application's: left alone.
	requireSubscribed(t, "x=%ZZ&entity=order-1&y=a;b", []string{"order-1"})
	requireSubscribed(t, "entity=order%3B1&entity=order%251", []string{"order;1", "order%1"})

	const name = "entity"
	forEachSeed(t, 200, func(t *testing.T, rng *rand.Rand, seed uint64) { //nolint:thelper // a subtest body
		// Up to two well-formed pairs around the one under test.
		var before, after []string
		var want []string
		for range rng.IntN(3) {
			id := randomEntityID(rng)
			before = append(before, name+"="+url.QueryEscape(id))
			want = append(want, id)
		}
		id := randomEntityID(rng)
		pair := name + "=" + url.QueryEscape(id)
		for range rng.IntN(3) {
			after = append(after, "other="+url.QueryEscape(randomEntityID(rng)))
		}
		if rng.IntN(4) == 0 {
			// Well-formed: subscribed.
			want = append(want, id)
			seen := map[string]bool{}
			var uniq []string
			for _, w := range want {
				if !seen[w] {
					seen[w] = true
					uniq = append(uniq, w)
				}
			}
			requireSubscribed(t, strings.Join(append(append(before, pair), after...), "&"), uniq)
			return
		}
		// Break the pair at a random place after the parameter's name: a
		// ';' or a '%' not followed by two hex digits.
		at := len(name) + rng.IntN(len(pair)-len(name)+1)
		var brk string
		switch rng.IntN(3) {
		case 0:
			brk = [...]string{";", ";x=y", ";" + name + "=a"}[rng.IntN(3)]
		case 1:
			// '%' then a character that is not a hex digit.
			const notHex = "gGzZ%;-._~!*"
			brk = "%" + string(notHex[rng.IntN(len(notHex))])
		default:
			// A '%' cut short by the end of the pair.
			at = len(pair)
			brk = [...]string{"%", "%1", "%a"}[rng.IntN(3)]
		}
		broken := pair[:at] + brk + pair[at:]
		_, perr := url.ParseQuery(broken)
		require.Error(t, perr, "seed %d: %q should be a pair ParseQuery drops", seed, broken)
		requireRefused(t, strings.Join(append(append(before, broken), after...), "&"))
	})
	// The subscribed clients above closed their connections; the hub drops
	// them once it reads the close, and nothing else may stay.
	require.Eventually(t, func() bool {
		st := hub.Stats()
		return st.Clients+st.Subscriptions == 0
	}, 10*time.Second, 5*time.Millisecond, "refusals leave no client behind: %+v", hub.Stats())
}

// randomEntityID returns a valid entity id of 1 to 20 characters, drawn
// from ASCII letters and digits, punctuation a query must encode, and a
// few non-ASCII letters.
func randomEntityID(rng *rand.Rand) string {
	const chars = "abcxyzABC0189-_.~;%&=+ #?/:"
	extra := []rune{'é', 'ß', '日', '🙂'}
	var sb strings.Builder
	for range 1 + rng.IntN(20) {
		if rng.IntN(8) == 0 {
			sb.WriteRune(extra[rng.IntN(len(extra))])
		} else {
			sb.WriteByte(chars[rng.IntN(len(chars))])
		}
	}
	return sb.String()
}
