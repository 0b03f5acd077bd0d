package live_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
)

// forEachSeed runs fn once per seed 0..n-1, each a subtest named by its
// seed, so a failing schedule replays with -run 'Test/seed=N'.
func forEachSeed(t *testing.T, n int, fn func(t *testing.T, rng *rand.Rand, seed uint64)) {
	t.Helper()
	for seed := range uint64(n) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			fn(t, rand.New(rand.NewPCG(seed, 0x11fe)), seed)
		})
	}
}

// TestHub_Property_SubscriptionBoundsAndOrder drives one connection with a
// random schedule of subscribes, unsubscribes (in the URL and as messages)
// and publishes over a few entities, and checks the protocol's promises on
// everything it receives: no update of an entity outside its
// subscribed…unsubscribed acknowledgements, each entity's updates in
// publish order with the data published, and every update published after
// the client saw its subscription acknowledged (and before it asked to
// unsubscribe) delivered.
func TestHub_Property_SubscriptionBoundsAndOrder(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 20, func(t *testing.T, rng *rand.Rand, seed uint64) { //nolint:thelper // a subtest body
		const ops = 300
		// Room for everything the schedule can queue: the test reads only
		// when it settles, and a dropped client would prove nothing.
		hub, b := setup(t, &live.Config{SendBuffer: 4 * ops})
		entities := []string{"order-1", "order-2", "order-3", "order-4"}

		type published struct {
			entity string
			data   string
			must   bool // the client saw the subscription acknowledged and had not asked to unsubscribe
		}
		var pubs []published // pubs[i] is at position tok(i+1)
		// subscribed[e]: the client's last request for e was a subscribe;
		// ackedAt[e]: how many requests had been sent when it was.
		subscribed := map[string]bool{}
		requestOf := map[string]int{}
		requests, answers := 0, 0
		var got []live.Message

		var inURL []string
		for _, e := range entities {
			if rng.IntN(2) == 0 {
				inURL = append(inURL, e)
				requests++
				requestOf[e] = requests
				subscribed[e] = true
			}
		}
		conn := b.dial(t, inURL...)

		// settle reads until every request sent so far is answered.
		settle := func() {
			for answers < requests {
				m := read(t, conn)
				got = append(got, m)
				if m.Type != live.TypeUpdated {
					answers++
				}
			}
		}
		for range ops {
			e := entities[rng.IntN(len(entities))]
			switch r := rng.IntN(10); {
			case r < 2:
				send(t, conn, `{"action":"subscribe","entity":"`+e+`"}`)
				requests++
				if !subscribed[e] {
					requestOf[e] = requests
				}
				subscribed[e] = true
			case r < 3:
				send(t, conn, `{"action":"unsubscribe","entity":"`+e+`"}`)
				requests++
				subscribed[e] = false
			case r < 4:
				settle()
			default:
				data := `{"entity":"` + e + `","n":` + strconv.Itoa(len(pubs)+1) + `}`
				pubs = append(pubs, published{entity: e, data: data, must: subscribed[e] && answers >= requestOf[e]})
				hub.Publish(e, json.RawMessage(data), tok(len(pubs)))
			}
		}
		// One more request: its answer comes after everything published.
		send(t, conn, `{"action":"unsubscribe","entity":"sync"}`)
		requests++
		settle()

		state := map[string]bool{}
		for _, e := range inURL {
			state[e] = false
		}
		last := map[string]int{}
		delivered := map[int]bool{}
		for i, m := range got {
			switch m.Type {
			case live.TypeSubscribed:
				state[m.Entity] = true
			case live.TypeUnsubscribed:
				state[m.Entity] = false
			case live.TypeUpdated:
				require.True(t, state[m.Entity], "seed %d: message %d, an update of %s outside its subscription: %s at %s", seed, i, m.Entity, m.Data, m.Position)
				pos, err := events.ParseToken(m.Position)
				require.NoError(t, err)
				n := int(pos.Minor())
				require.Greater(t, n, last[m.Entity], "seed %d: %s's updates out of publish order", seed, m.Entity)
				last[m.Entity] = n
				require.Equal(t, pubs[n-1].entity, m.Entity, "seed %d", seed)
				require.JSONEq(t, pubs[n-1].data, string(m.Data), "seed %d", seed)
				delivered[n] = true
			default:
				require.Failf(t, "unexpected message", "seed %d: %+v", seed, m)
			}
		}
		for i, p := range pubs {
			if p.must {
				require.True(t, delivered[i+1], "seed %d: update %d of %s, published while its subscription was acknowledged, never came", seed, i+1, p.entity)
			}
		}
	})
}

// rowStore is a one-row read model: the row of the last event applied and
// its position, read and written atomically as a transaction would.
type rowStore struct {
	mu  sync.Mutex
	pos int
}

func (s *rowStore) commit(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pos = n
}

// TestHub_Property_SnapshotThenEveryLaterUpdate checks the package doc's
// Snapshots promise against a publisher that runs concurrently with the
// subscriptions: each subscription of the client starts with the row as it
// is (or nothing, before the first commit), then every later update in
// order: positions follow one another with no gap and no step back, until
// the unsubscribe is acknowledged.
func TestHub_Property_SnapshotThenEveryLaterUpdate(t *testing.T) {
	t.Parallel()
	forEachSeed(t, 10, func(t *testing.T, rng *rand.Rand, seed uint64) { //nolint:thelper // a subtest body
		const entity = "order-1"
		const episodes = 60
		var store rowStore
		var mu sync.Mutex // guards rng, shared with the Snapshot
		jitter := func() {
			mu.Lock()
			n := rng.IntN(50)
			mu.Unlock()
			for range n {
				runtime.Gosched()
			}
		}
		credits := make(chan struct{}, 1<<16)
		hub, b := setup(t, &live.Config{
			SendBuffer: 1 << 16,
			Snapshot: func(context.Context, string) (json.RawMessage, events.Token, bool, error) {
				jitter() // widens the window in which publishes race the read
				store.mu.Lock()
				defer store.mu.Unlock()
				if store.pos == 0 {
					return nil, events.Token{}, false, nil
				}
				return json.RawMessage(row(store.pos)), tok(store.pos), true, nil
			},
		})

		// The projection: commit the row, then publish it, once per credit.
		done := make(chan struct{})
		go func() {
			defer close(done)
			for n := 1; ; n++ {
				if _, ok := <-credits; !ok {
					return
				}
				store.commit(n)
				hub.Publish(entity, json.RawMessage(row(n)), tok(n))
				jitter()
			}
		}()
		stopped := false
		stop := func() {
			if !stopped {
				stopped = true
				close(credits)
				<-done
			}
		}
		t.Cleanup(stop)
		given := 0
		give := func() {
			mu.Lock()
			n := rng.IntN(8)
			mu.Unlock()
			for range n {
				credits <- struct{}{}
			}
			given += n
		}

		conn := b.dial(t)
		for ep := range episodes {
			send(t, conn, `{"action":"subscribe","entity":"`+entity+`"}`)
			give() // publishes race the registration and the snapshot
			readType(t, conn, live.TypeSubscribed, entity)

			// at is the position the client's view of the row is at: the
			// snapshot's, if one comes, and then one more per update.
			at, first := 0, true
			take := func(m live.Message) {
				require.Equal(t, live.TypeUpdated, m.Type, "seed %d, episode %d: %+v", seed, ep, m)
				require.Equal(t, entity, m.Entity)
				pos, err := events.ParseToken(m.Position)
				require.NoError(t, err)
				n := int(pos.Minor())
				require.JSONEq(t, row(n), string(m.Data), "seed %d", seed)
				if m.Snapshot {
					require.True(t, first, "seed %d, episode %d: a snapshot after an update", seed, ep)
					require.GreaterOrEqual(t, n, at, "seed %d, episode %d", seed, ep)
				} else {
					require.Equal(t, at+1, n, "seed %d, episode %d: after position %d came %d", seed, ep, at, n)
				}
				at, first = n, false
			}
			for at < given {
				take(read(t, conn))
			}

			send(t, conn, `{"action":"unsubscribe","entity":"`+entity+`"}`)
			give() // publishes race the unsubscribe
			for {
				m := read(t, conn)
				if m.Type == live.TypeUnsubscribed {
					break
				}
				take(m)
			}
		}
		stop()
		require.Zero(t, hub.Stats().Dropped, "seed %d", seed)
		_ = conn.Close(websocket.StatusNormalClosure, "")
	})
}
