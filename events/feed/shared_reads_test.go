package feed_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// silentSource is a feed.Source whose events become readable without a
// wake-up, as on PostgreSQL when the transaction holding the horizon is
// not converge's, or when a NOTIFY from another process is lost: readers
// learn of them only by reading again. Its wake channel never fires.
type silentSource struct {
	feed.Source
	mu       sync.Mutex
	all      []events.Envelope
	readable int
}

func (s *silentSource) Wake() <-chan struct{} { return make(chan struct{}) }

func (s *silentSource) add(env events.Envelope, readable bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.all = append(s.all, env)
	if readable {
		s.readable = len(s.all)
	}
}

func (s *silentSource) reveal() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.readable = len(s.all)
}

func (s *silentSource) ReadFeed(_ context.Context, after events.Token, f feed.Filter, limit int) (feed.Batch, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := feed.Batch{Events: []events.Envelope{}}
	for _, env := range s.all[:s.readable] {
		if !env.Token.After(after) {
			continue
		}
		b.ScannedTo = env.Token
		if f.Match(env) {
			b.Events = append(b.Events, env)
			if len(b.Events) == limit {
				return b, nil
			}
		}
	}
	if len(b.Events) == 0 {
		b.Pending = s.readable < len(s.all)
	}
	return b, nil
}

// TestSharedReadsReadAgainWhatNoWakeAnnounces: a partition that asks again
// from where it stood (events pending, a poll, a lost wake-up) gets a fresh
// read, never the answer it already had, so it sees events that became
// readable without a wake-up.
func TestSharedReadsReadAgainWhatNoWakeAnnounces(t *testing.T) {
	t.Parallel()
	for _, pending := range []bool{true, false} {
		t.Run(fmt.Sprintf("pending=%v", pending), func(t *testing.T) {
			t.Parallel()
			seed := rand.Uint64()
			r := rand.New(rand.NewPCG(seed, 7))
			count := 2 + r.IntN(6)
			src := &silentSource{}
			shared := feed.SharedReads(src, count, 100)
			n := 5 + r.IntN(20)
			newEnv := func(i int) events.Envelope {
				return events.Envelope{
					ID: fmt.Sprint(i), StreamID: fmt.Sprintf("s-%d", r.IntN(50)), Type: "t",
					Token: events.MakeToken(uint64(i+1), 0),
				}
			}
			if pending {
				for i := range n {
					src.add(newEnv(i), false)
				}
			}
			part := func(i int) feed.Filter { return feed.Filter{Partition: feed.Partition{Index: i, Count: count}} }
			// Every partition reads and is told to wait: for pending
			// events, or for a wake-up (nothing there).
			for i := range count {
				b, err := shared.ReadFeed(t.Context(), events.Token{}, part(i), 100)
				require.NoError(t, err)
				require.Empty(t, b.Events)
				require.Equal(t, pending, b.Pending, "seed %d", seed)
			}
			// The events become readable, announced by nothing.
			if pending {
				src.reveal()
			} else {
				for i := range n {
					src.add(newEnv(i), true)
				}
			}
			seen := 0
			for i := range count {
				b, err := shared.ReadFeed(t.Context(), events.Token{}, part(i), 100)
				require.NoError(t, err)
				for _, env := range b.Events {
					require.Equal(t, i, feed.PartitionOf(env.StreamID, count), "seed %d", seed)
				}
				seen += len(b.Events)
			}
			require.Equal(t, n, seen, "seed %d: every partition's second read sees what became readable", seed)
		})
	}
}

// TestSharedReadsLimitZeroMeansTheDefault: a limit of zero or less means
// events.DefaultReadLimit, as in the stores, and is no reason to fail.
func TestSharedReadsLimitZeroMeansTheDefault(t *testing.T) {
	t.Parallel()
	src := &silentSource{}
	n := events.DefaultReadLimit + 7
	for i := range n {
		src.add(events.Envelope{ID: fmt.Sprint(i), StreamID: "s-1", Type: "t", Token: events.MakeToken(uint64(i+1), 0)}, true)
	}
	f := feed.Filter{Partition: feed.Partition{Index: feed.PartitionOf("s-1", 2), Count: 2}}
	for _, limit := range []int{0, -1} {
		b, err := feed.SharedReads(src, 2, limit).ReadFeed(t.Context(), events.Token{}, f, limit)
		require.NoError(t, err)
		require.NotEmpty(t, b.Events, "limit %d", limit)
		require.LessOrEqual(t, len(b.Events), events.DefaultReadLimit, "limit %d", limit)
		require.Equal(t, b.Events[len(b.Events)-1].Token, b.ScannedTo, "limit %d", limit)
	}
}

// TestSharedReadsAnswerOnlyTheirOwnSplit: a read made for one partition
// count and key answers no reader with another; it reads for itself and
// gets its own partition's events.
func TestSharedReadsAnswerOnlyTheirOwnSplit(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, 11))
	src := &silentSource{}
	for i := range 60 {
		env := events.Envelope{ID: fmt.Sprint(i), StreamID: fmt.Sprintf("s-%d", r.IntN(40)), Type: "t", Token: events.MakeToken(uint64(i+1), 0)}
		if r.IntN(2) == 0 {
			env.Metadata.CorrelationID = fmt.Sprintf("c-%d", r.IntN(40))
		}
		src.add(env, true)
	}
	shared := feed.SharedReads(src, 2, 100)
	first := feed.Filter{Partition: feed.Partition{Index: 0, Count: 2}}
	_, err := shared.ReadFeed(t.Context(), events.Token{}, first, 100)
	require.NoError(t, err)
	for _, other := range []feed.Partition{{Index: 1, Count: 3}, {Index: 1, Count: 2, Key: feed.ByCorrelation}} {
		b, err := shared.ReadFeed(t.Context(), events.Token{}, feed.Filter{Partition: other}, 100)
		require.NoError(t, err)
		var want []string
		for _, env := range src.all {
			if feed.PartitionOf(feed.KeyOf(other.Key, env), other.Count) == other.Index {
				want = append(want, env.ID)
			}
		}
		var got []string
		for _, env := range b.Events {
			got = append(got, env.ID)
		}
		require.Equal(t, want, got, "seed %d: partition %+v", seed, other)
	}
}
