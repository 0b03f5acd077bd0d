package eventstoretest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// sharedReadsWorld is what the shared-reads tests append: events of two
// types over a few streams, some with a correlation id, so a partition by
// either key splits them unevenly.
type sharedReadsWorld struct {
	r      *rand.Rand
	filter feed.Filter
	count  int
}

func newSharedReadsWorld(seed uint64) *sharedReadsWorld {
	r := rand.New(rand.NewPCG(seed, seed^0x51ed270b27aa3c5d))
	w := &sharedReadsWorld{r: r, count: 2 + r.IntN(5)}
	w.filter.Partition.Key = []feed.PartitionKey{feed.ByStream, feed.ByCorrelation}[r.IntN(2)]
	switch r.IntN(3) {
	case 0:
		w.filter.Types = []string{orderPlacedType}
	case 1:
		w.filter.Types = []string{orderPlacedType, counterBumpedType}
	}
	return w
}

// partition is the filter of partition i.
func (w *sharedReadsWorld) partition(i int) feed.Filter {
	f := w.filter
	f.Partition.Index, f.Partition.Count = i, w.count
	return f
}

// events returns one to three random events.
func (w *sharedReadsWorld) events() []events.Event {
	evs := make([]events.Event, 1+w.r.IntN(3))
	for i := range evs {
		evs[i] = placed("o", i)
		if w.r.IntN(3) == 0 {
			evs[i] = events.Event{ID: newID(), Data: counterBumped{N: i}}
		}
		if w.r.IntN(2) == 0 {
			evs[i].Metadata.CorrelationID = fmt.Sprintf("c%d", w.r.IntN(6))
		}
	}
	return evs
}

func (w *sharedReadsWorld) stream() string { return fmt.Sprintf("s-%d", w.r.IntN(12)) }

// matching returns the events of all that partition i's filter passes,
// after `after`: what a consumer of the partition has yet to see.
func (w *sharedReadsWorld) matching(all []events.Envelope, i int, after events.Token) []events.Envelope {
	f := w.partition(i)
	var out []events.Envelope
	for _, env := range all {
		if env.Token.After(after) && f.Match(env) {
			out = append(out, env)
		}
	}
	return out
}

// sharedReader is one partition's consumer, as feed's consumers read:
// take the wake channel, read, move to the last event or to ScannedTo.
type sharedReader struct {
	pos  events.Token
	got  []string
	wake <-chan struct{}
	// idle is set when the last read found nothing and nothing pending:
	// the consumer then waits on wake.
	idle bool
}

// testSharedReadsProperty checks feed.SharedReads against the Batch
// contract over random events, partition counts, keys, limits and
// interleavings of reads and appends: each answer is a prefix of the
// partition's unseen events, holds every one of them up to ScannedTo, and
// a partition that was told nothing is there is woken by anything that
// arrives for it. Each partition ends with exactly its events, in order.
func testSharedReadsProperty(t *testing.T, src feed.Source, s events.Store) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	w := newSharedReadsWorld(seed)
	limit := 1 + w.r.IntN(5)
	shared := feed.SharedReads(src, w.count, limit)
	readers := make([]sharedReader, w.count)
	var all []events.Envelope

	// read reads partition i once and reports whether it moved and
	// whether the store said events are pending.
	read := func(i int) (moved, pending bool) {
		p := &readers[i]
		p.wake = shared.Wake()
		b, err := shared.ReadFeed(t.Context(), p.pos, w.partition(i), limit)
		require.NoError(t, err, "seed %d", seed)
		want := w.matching(all, i, p.pos)
		require.LessOrEqual(t, len(b.Events), limit, "seed %d: more than the limit", seed)
		require.LessOrEqual(t, len(b.Events), len(want), "seed %d: partition %d got events it should not", seed, i)
		require.Equal(t, ids(want[:len(b.Events)]), ids(b.Events), "seed %d: partition %d at %s", seed, i, p.pos)
		if len(b.Events) > 0 {
			require.False(t, b.ScannedTo.Before(b.Events[len(b.Events)-1].Token), "seed %d: ScannedTo is at least the last event's token", seed)
		}
		for _, env := range want[len(b.Events):] {
			require.True(t, env.Token.After(b.ScannedTo), "seed %d: partition %d: event %s at or before ScannedTo %s was not returned", seed, i, env.Token, b.ScannedTo)
		}
		if len(b.Events) > 0 {
			p.got = append(p.got, ids(b.Events)...)
			p.pos, moved = b.Events[len(b.Events)-1].Token, true
		}
		if b.ScannedTo.After(p.pos) {
			p.pos, moved = b.ScannedTo, true
		}
		p.idle = !moved && !b.Pending
		return moved, b.Pending
	}
	requireWoken := func() {
		for i, p := range readers {
			if !p.idle || len(w.matching(all, i, p.pos)) == 0 {
				continue
			}
			select {
			case <-p.wake:
			default:
				require.Fail(t, "an idle partition would sleep through its events", "seed %d: partition %d at %s", seed, i, p.pos)
			}
		}
	}

	appended := 0
	for range 300 {
		if w.r.IntN(4) == 0 && appended < 60 {
			evs := w.events()
			mustAppend(t, s, w.stream(), events.AnyVersion, evs...)
			appended += len(evs)
			all = awaitAll(t, s, appended)
		} else {
			read(w.r.IntN(w.count))
		}
		requireWoken()
	}
	// Drain: every partition reads until it is idle. A store may hold
	// events back behind another test's open transaction (Pending); the
	// partition then reads again after a pause, as a consumer does.
	deadline := time.Now().Add(waitFor)
	for i := range readers {
		for {
			moved, pending := read(i)
			if readers[i].idle {
				break
			}
			require.True(t, time.Now().Before(deadline), "seed %d: partition %d never caught up", seed, i)
			if pending && !moved {
				time.Sleep(pollEvery) // no signal says when the horizon moves
			}
		}
		require.Equal(t, nilIfEmpty(ids(w.matching(all, i, events.Token{}))), nilIfEmpty(readers[i].got), "seed %d: partition %d", seed, i)
	}
}

// testSharedReadsConcurrent runs consumers of every partition through
// feed.SharedReads at once, as a processor's partitions do, while writers
// append: each partition receives exactly its events, in order, once.
func testSharedReadsConcurrent(t *testing.T, src feed.Source, s events.Store) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	w := newSharedReadsWorld(seed)
	const writers, perWriter = 4, 25
	shared := feed.SharedReads(src, w.count, 3)
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	defer cancel()

	// Writers: their events are drawn up front (rand.Rand is not safe
	// for concurrent use).
	type appendCall struct {
		stream string
		evs    []events.Event
	}
	calls := make([][]appendCall, writers)
	total := 0
	for i := range calls {
		for n := 0; n < perWriter; {
			c := appendCall{w.stream(), w.events()}
			calls[i] = append(calls[i], c)
			n += len(c.evs)
			total += len(c.evs)
		}
	}
	var wg sync.WaitGroup
	for _, cs := range calls {
		wg.Go(func() {
			for _, c := range cs {
				if _, err := s.Append(ctx, c.stream, events.AnyVersion, c.evs...); err != nil {
					t.Errorf("append: %v", err)
					return
				}
			}
		})
	}

	// Consumers stop once they hold as many events as their partition
	// has in the end, which is known once the writers are done.
	targets := make([]chan int, w.count)
	got := make([][]string, w.count)
	errs := make(chan error, w.count)
	for i := range w.count {
		targets[i] = make(chan int, 1)
		go func() {
			errs <- consumeShared(ctx, shared, w.partition(i), targets[i], &got[i])
		}()
	}
	wg.Wait()
	all := awaitAll(t, s, total)
	for i := range w.count {
		targets[i] <- len(w.matching(all, i, events.Token{}))
	}
	for range w.count {
		require.NoError(t, <-errs, "seed %d", seed)
	}
	for i := range w.count {
		want := ids(w.matching(all, i, events.Token{}))
		require.Equal(t, nilIfEmpty(want), nilIfEmpty(got[i]), "seed %d: partition %d of %d", seed, i, w.count)
	}
}

// consumeShared reads partition f as a consumer does until it holds as
// many events as target says (or ctx ends), appending their ids to got.
// It waits on the wake channel when idle and backs off briefly while
// events are pending.
func consumeShared(ctx context.Context, src feed.Source, f feed.Filter, target <-chan int, got *[]string) error {
	var pos events.Token
	want := -1
	for {
		if want < 0 {
			select {
			case want = <-target:
			default:
			}
		}
		if want >= 0 && len(*got) >= want {
			return nil
		}
		wake := src.Wake()
		b, err := src.ReadFeed(ctx, pos, f, 3)
		if err != nil {
			return err
		}
		for _, env := range b.Events {
			if !env.Token.After(pos) {
				return fmt.Errorf("partition %d: event %s at or before the position %s", f.Partition.Index, env.Token, pos)
			}
			*got = append(*got, env.ID)
			pos = env.Token
		}
		if b.ScannedTo.After(pos) {
			pos = b.ScannedTo
			continue
		}
		if len(b.Events) > 0 {
			continue
		}
		var backoff <-chan time.Time
		if b.Pending {
			backoff = time.After(2 * time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("partition %d: %d events, want %d: %w", f.Partition.Index, len(*got), want, ctx.Err())
		case <-wake:
		case <-backoff:
		case want = <-target:
		}
	}
}

// sharedReadsTests are in feedTests.
var sharedReadsTests = []feedTest{
	{"SharedReadsProperty", testSharedReadsProperty},
	{"SharedReadsConcurrent", testSharedReadsConcurrent},
}
