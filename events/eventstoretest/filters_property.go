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

// filterSegments build the property test's stream, category and
// correlation ids: SQL pattern and escape characters, quotes, case pairs
// and multi-byte characters, so a store that pattern-matches, folds case or
// hashes other bytes than Go's puts some event in the wrong place.
var filterSegments = []string{"a", "A", "ab", "%", "_", `\`, "'", "é", "🚀", " x", "ord", ""}

// testReadFeedFiltersProperty checks, over random streams, correlation ids
// and filters, what the feed package doc promises of a Filter: its parts all
// apply; type names are compared whole; a stream is in a category when its
// id equals it or starts with it and "-", as plain strings; and an event is
// in the partition feed.PartitionOf names for its key (its correlation id,
// else its stream id, under ByCorrelation), which PostgreSQL computes in
// SQL, so each event is in exactly one partition of a count.
func testReadFeedFiltersProperty(t *testing.T, src feed.Source, s events.Store) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	// An id is segments joined by "-" or run together, so that a category
	// is also the start of ids outside it ("a" of "a_-x").
	id := func(parts int) string {
		var b strings.Builder
		for i := range parts {
			if i > 0 && r.IntN(3) > 0 {
				b.WriteByte('-')
			}
			b.WriteString(filterSegments[r.IntN(len(filterSegments))])
		}
		return b.String()
	}
	// Streams of one to three segments; a stream id cannot be empty.
	var streams []string
	for len(streams) < 20 {
		if sid := id(1 + r.IntN(4)); sid != "" && !slices.Contains(streams, sid) {
			streams = append(streams, sid)
		}
	}
	// Type filters: the two stored names, a pattern and a case variant,
	// which must match nothing.
	typeChoices := []string{orderPlacedType, counterBumpedType, "eventstoretest.%", strings.ToUpper(orderPlacedType)}
	for i := range 60 {
		ev := placed("o", i)
		if r.IntN(2) == 0 {
			ev = events.Event{Data: counterBumped{N: i}}
		}
		if r.IntN(2) == 0 {
			ev.Metadata.CorrelationID = id(1 + r.IntN(2))
		}
		mustAppend(t, s, streams[r.IntN(len(streams))], events.AnyVersion, ev)
	}
	all := awaitAll(t, s, 60)

	// The model, written from the doc rather than from feed.Filter.Match.
	inCategory := func(stream, c string) bool { return stream == c || strings.HasPrefix(stream, c+"-") }
	keyOf := func(key feed.PartitionKey, env events.Envelope) string {
		if key == feed.ByCorrelation && env.Metadata.CorrelationID != "" {
			return env.Metadata.CorrelationID
		}
		return env.StreamID
	}
	for range 150 {
		var f feed.Filter
		for range r.IntN(3) {
			f.Types = append(f.Types, typeChoices[r.IntN(len(typeChoices))])
		}
		for range r.IntN(4) {
			var c string
			switch stream := []rune(streams[r.IntN(len(streams))]); r.IntN(4) {
			case 0:
				c = id(1 + r.IntN(2))
			case 1: // a real stream id cut anywhere: "a-b" of "a-b_"
				c = string(stream[:1+r.IntN(len(stream))])
			default: // a leading part of a real stream id, or its near miss
				parts := strings.Split(string(stream), "-")
				parts = parts[:1+r.IntN(len(parts))]
				if r.IntN(2) == 0 {
					parts[r.IntN(len(parts))] = filterSegments[r.IntN(len(filterSegments))]
				}
				c = strings.Join(parts, "-")
			}
			if c != "" {
				f.Categories = append(f.Categories, c)
			}
		}
		if count := r.IntN(6); count > 1 {
			f.Partition = feed.Partition{Index: r.IntN(count), Count: count, Key: []feed.PartitionKey{feed.ByStream, feed.ByCorrelation}[r.IntN(2)]}
		}
		var want []string
		for _, env := range all {
			switch {
			case len(f.Types) > 0 && !slices.Contains(f.Types, env.Type):
			case len(f.Categories) > 0 && !slices.ContainsFunc(f.Categories, func(c string) bool { return inCategory(env.StreamID, c) }):
			case f.Partition.Enabled() && feed.PartitionOf(keyOf(f.Partition.Key, env), f.Partition.Count) != f.Partition.Index:
			default:
				want = append(want, env.ID)
			}
		}
		got := awaitFiltered(t, src, f, len(want))
		require.Equal(t, want, nilIfEmpty(ids(got)), "seed %d: ReadFeed(%s)", seed, describeFilter(f))
	}
}

// describeFilter quotes a filter's strings, so that a failure shows the
// characters that went wrong.
func describeFilter(f feed.Filter) string {
	return fmt.Sprintf("types %q, categories %q, partition %d of %d by %s", f.Types, f.Categories, f.Partition.Index, f.Partition.Count, f.Partition.Key)
}
