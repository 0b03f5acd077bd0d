package eventstoretest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// pendingStreams are the streams of testReadFeedFilteredPendingBehindUnit:
// categories that share roots ("a" holds "a-1" and "a-2") and one without.
var pendingStreams = []string{"a-1", "a-2", "b-1", "b-2", "c-1", "ab"}

// modelMatch is whether env passes f, written from the feed package doc
// rather than from feed.Filter.Match.
func modelMatch(f feed.Filter, env events.Envelope) bool {
	inCategory := func(c string) bool { return env.StreamID == c || strings.HasPrefix(env.StreamID, c+"-") }
	key := env.StreamID
	if f.Partition.Key == feed.ByCorrelation && env.Metadata.CorrelationID != "" {
		key = env.Metadata.CorrelationID
	}
	switch {
	case len(f.Types) > 0 && !slices.Contains(f.Types, env.Type):
		return false
	case len(f.Categories) > 0 && !slices.ContainsFunc(f.Categories, inCategory):
		return false
	case f.Partition.Enabled() && feed.PartitionOf(key, f.Partition.Count) != f.Partition.Index:
		return false
	}
	return true
}

// testReadFeedFilteredPendingBehindUnit holds filtered reads to what
// feed.Batch.Pending promises: a read that returned no events while an
// open unit holds committed events back reports Pending whenever a
// committed event after its cursor waits behind the unit, whether it
// matches the filter or not. A filtered reader moves its checkpoint past
// unmatched events (ScannedTo), so unmatched events it cannot read yet are
// pending for it too; a store that counted matching events only would let
// it wait for a wake-up the open unit may never send. Random filters
// (types, categories, partitions) read from random cursors while random
// committed events, matching or not, wait behind an open unit; Events and
// ScannedTo are checked too.
func testReadFeedFilteredPendingBehindUnit(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	event := func(typ string) events.Event {
		ev := placed("o", r.IntN(100))
		if typ == counterBumpedType {
			ev = events.Event{ID: newID(), Data: counterBumped{N: r.IntN(100)}}
		}
		if r.IntN(3) == 0 {
			ev.Metadata.CorrelationID = pendingStreams[r.IntN(len(pendingStreams))]
		}
		return ev
	}
	randomType := func() string { return []string{orderPlacedType, counterBumpedType}[r.IntN(2)] }
	// unmatched counts the reads that must report Pending although no event
	// behind the unit matches their filter: the case this test is for.
	unmatched := 0

	// The reviewer's case first: a-1 (t1), b-1 (t2), a unit holding c-1
	// (t1), and b-2 (t2) committed behind it. Read after b-1, filters that
	// match nothing committed behind the unit still report it pending.
	mustAppend(t, s, "a-1", events.NoStream, placed("1", 1))
	e2 := mustAppend(t, s, "b-1", events.NoStream, events.Event{ID: newID(), Data: counterBumped{N: 1}})
	total := 2
	awaitAll(t, s, total)
	u := begin(t, src)
	_, err := u.Append(ctx, "c-1", events.NoStream, placed("2", 2))
	require.NoError(t, err)
	mustAppend(t, s, "b-2", events.NoStream, events.Event{ID: newID(), Data: counterBumped{N: 2}})
	total++
	notB2 := feed.Partition{Index: (feed.PartitionOf("b-2", 2) + 1) % 2, Count: 2}
	for _, f := range []feed.Filter{
		{Types: []string{orderPlacedType}},
		{Categories: []string{"a"}},
		{Categories: []string{"a-1"}},
		{Partition: notB2},
		{},
	} {
		b, err := src.ReadFeed(ctx, e2.Token, f, 10)
		require.NoError(t, err)
		require.Empty(t, b.Events, "%s", describeFilter(f))
		require.True(t, b.ScannedTo.IsZero(), "%s: nothing after the cursor is readable", describeFilter(f))
		require.True(t, b.Pending, "%s: b-2 waits behind the unit, matching or not", describeFilter(f))
	}
	require.NoError(t, u.Rollback(ctx))

	// Random rounds: readable events, then a unit holding one event and
	// zero to four committed events behind it.
	for round := range 8 {
		for range r.IntN(4) {
			mustAppend(t, s, pendingStreams[r.IntN(len(pendingStreams))], events.AnyVersion, event(randomType()))
			total++
		}
		readable := awaitAll(t, s, total)
		u := begin(t, src)
		heldStream := pendingStreams[r.IntN(len(pendingStreams))]
		_, err := u.Append(ctx, heldStream, events.AnyVersion, event(randomType()))
		require.NoError(t, err)
		// Appenders to the unit's stream would wait for it: use the others.
		others := slices.DeleteFunc(slices.Clone(pendingStreams), func(id string) bool { return id == heldStream })
		var behind []events.Envelope
		for range r.IntN(5) {
			typ := randomType()
			ev := event(typ)
			res := mustAppend(t, s, others[r.IntN(len(others))], events.AnyVersion, ev)
			// What a filter sees of a committed event behind the unit.
			behind = append(behind, events.Envelope{ID: res.EventIDs[0], StreamID: res.StreamID, Type: typ, Metadata: ev.Metadata, Token: res.Token})
			total++
		}
		for range 25 {
			var f feed.Filter
			for range r.IntN(3) {
				f.Types = append(f.Types, randomType())
			}
			for range r.IntN(3) {
				c := pendingStreams[r.IntN(len(pendingStreams))]
				if r.IntN(2) == 0 {
					c, _, _ = strings.Cut(c, "-")
				}
				f.Categories = append(f.Categories, c)
			}
			if count := r.IntN(4); count > 1 {
				f.Partition = feed.Partition{Index: r.IntN(count), Count: count, Key: []feed.PartitionKey{feed.ByStream, feed.ByCorrelation}[r.IntN(2)]}
			}
			// Mostly the last readable event, where nothing is readable.
			var after events.Token
			switch c := r.IntN(4); {
			case c < 2 && len(readable) > 0:
				after = readable[len(readable)-1].Token
			case c == 2 && len(readable) > 0:
				after = readable[r.IntN(len(readable))].Token
			}
			limit := 1 + r.IntN(4)
			var want []string
			var scanned events.Token
			for _, env := range readable {
				if !env.Token.After(after) {
					continue
				}
				scanned = env.Token
				if len(want) < limit && modelMatch(f, env) {
					want = append(want, env.ID)
					if len(want) == limit {
						break
					}
				}
			}
			what := func() string {
				return fmt.Sprintf("round %d: ReadFeed(after %v, %s, limit %d)", round, after, describeFilter(f), limit)
			}
			b, err := src.ReadFeed(ctx, after, f, limit)
			require.NoError(t, err)
			require.Equal(t, want, nilIfEmpty(ids(b.Events)), "seed %d: %s", seed, what())
			require.Equal(t, scanned, b.ScannedTo, "seed %d: %s", seed, what())
			if len(want) == 0 {
				require.Equal(t, len(behind) > 0, b.Pending, "seed %d: %s: %d committed events behind the unit", seed, what(), len(behind))
				if len(behind) > 0 && !slices.ContainsFunc(behind, func(env events.Envelope) bool { return modelMatch(f, env) }) {
					unmatched++
				}
			}
		}
		if r.IntN(2) == 0 {
			require.NoError(t, u.Commit(ctx))
			total++
		} else {
			require.NoError(t, u.Rollback(ctx))
		}
		awaitAll(t, s, total)
	}
	require.Positive(t, unmatched, "seed %d: some empty reads had only unmatched events behind the unit", seed)
}
