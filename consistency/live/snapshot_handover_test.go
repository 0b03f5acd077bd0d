package live_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
)

// TestHub_Snapshot_HandOverIsTheSameEitherSide checks that updates
// published after a snapshot reach the client the same way whether they
// were published while the snapshot was being read (buffered, then handed
// over) or once the subscription was live. Over random snapshot positions
// (or no row found) and random sequences of published positions, both
// follow Publish's rule: an update at or before the snapshot's position is
// skipped (the snapshot has it) until a later one has gone through, and
// from then on every update goes through as published
// (TestHub_Snapshot/PublishedAfterTheHandOver).
func TestHub_Snapshot_HandOverIsTheSameEitherSide(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0x5a9))
	for round := range 30 {
		at := 1 + rng.IntN(10)
		found := rng.IntN(6) != 0
		pubs := make([]int, 1+rng.IntN(8))
		for i := range pubs {
			pubs[i] = 1 + rng.IntN(at+4)
		}
		t.Run(fmt.Sprintf("round=%d", round), func(t *testing.T) {
			t.Parallel()
			t.Logf("snapshot at %d (found %v), published %v", at, found, pubs)
			want := []int{}
			covered := found
			for _, p := range pubs {
				if covered && p <= at {
					continue
				}
				covered = false
				want = append(want, p)
			}
			later := updatesAfterSnapshot(t, at, found, pubs, false)
			require.Equal(t, want, later, "published once the subscription was live")
			buffered := updatesAfterSnapshot(t, at, found, pubs, true)
			require.Equal(t, later, buffered, "published while the snapshot was read")
		})
	}
}

// updatesAfterSnapshot subscribes a client to an entity whose snapshot is
// at position at (or not found), publishes an update at each of pubs,
// while the snapshot is read (duringSnapshot) or once the client has it,
// and returns the updates the client gets after it, each as the i of its
// row(i) at tok(i).
func updatesAfterSnapshot(t *testing.T, at int, found bool, pubs []int, duringSnapshot bool) []int {
	t.Helper()
	called := make(chan struct{})
	release := make(chan struct{})
	if !duringSnapshot {
		close(release)
	}
	hub, b := setup(t, &live.Config{
		Snapshot: func(ctx context.Context, id string) (json.RawMessage, events.Token, bool, error) {
			close(called) // one subscription, one call
			select {
			case <-release:
			case <-ctx.Done():
				return nil, events.Token{}, false, ctx.Err()
			}
			if !found {
				return nil, events.Token{}, false, nil
			}
			return json.RawMessage(row(at)), tok(at), true, nil
		},
	})
	conn := b.dial(t)
	send(t, conn, `{"action":"subscribe","entity":"order-1"}`)
	readType(t, conn, live.TypeSubscribed, "order-1")
	<-called
	publish := func() {
		for _, p := range pubs {
			hub.Publish("order-1", json.RawMessage(row(p)), tok(p))
		}
	}
	if duringSnapshot {
		publish()
		close(release)
	}
	if found {
		m := readType(t, conn, live.TypeUpdated, "order-1")
		require.True(t, m.Snapshot, "message %+v", m)
		require.Equal(t, tok(at).String(), m.Position)
	}
	if !duringSnapshot {
		publish()
	}
	// The worker answers a request after the snapshot is handed over, and
	// the answer is queued after everything published before it.
	send(t, conn, `{"action":"unsubscribe","entity":"sync"}`)
	got := []int{}
	for {
		m := read(t, conn)
		if m.Type == live.TypeUnsubscribed {
			require.Equal(t, "sync", m.Entity)
			return got
		}
		require.Equal(t, live.TypeUpdated, m.Type, "message %+v", m)
		require.False(t, m.Snapshot, "message %+v", m)
		var d struct{ Seq int }
		require.NoError(t, json.Unmarshal(m.Data, &d))
		require.Equal(t, tok(d.Seq).String(), m.Position, "the data published at the position")
		got = append(got, d.Seq)
	}
}
