package eventstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

func testReadFeedTypes(t *testing.T, src feed.Source, s events.Store) {
	mustAppend(t, s, "order-1", events.AnyVersion, placed("1", 1))
	mustAppend(t, s, "counter-1", events.AnyVersion, events.Event{Data: counterBumped{N: 1}})
	mustAppend(t, s, "order-1", events.AnyVersion, placed("1", 2), events.Event{Data: counterBumped{N: 2}})
	all := awaitAll(t, s, 4)

	got := awaitFiltered(t, src, feed.Filter{Types: []string{counterBumpedType}}, 2)
	require.Equal(t, []string{all[1].ID, all[3].ID}, ids(got))
	got = awaitFiltered(t, src, feed.Filter{Types: []string{orderPlacedType, counterBumpedType}}, 4)
	require.Equal(t, ids(all), ids(got))
	got = awaitFiltered(t, src, feed.Filter{Types: []string{orderPlacedType}, Categories: []string{"counter"}}, 0)
	require.Empty(t, got, "the parts of a filter all apply")
	got = awaitFiltered(t, src, feed.Filter{Types: []string{"eventstoretest.%"}}, 0)
	require.Empty(t, got, "type names are compared whole")
}

func testReadFeedCategoriesAreLiteral(t *testing.T, src feed.Source, s events.Store) {
	streams := []string{"ord%-1", "ord_-1", "orde-1", "ordx-1", "a_b-1", "axb-1", "a_b-1-x", "a_b"}
	for i, stream := range streams {
		mustAppend(t, s, stream, events.AnyVersion, placed("o", i))
	}
	all := awaitAll(t, s, len(streams))
	pick := func(idx ...int) []string {
		out := make([]string, len(idx))
		for i, j := range idx {
			out[i] = all[j].ID
		}
		return out
	}
	for _, tc := range []struct {
		cats []string
		want []string
	}{
		{[]string{"ord%"}, pick(0)},
		{[]string{"ord_"}, pick(1)},
		{[]string{"a_b"}, pick(4, 6, 7)},
		{[]string{"a_b-1"}, pick(4, 6)},
		{[]string{"ord%", "a_b-1"}, pick(0, 4, 6)},
		{[]string{"%"}, nil},
		{[]string{"_"}, nil},
		{[]string{"ord"}, nil},
	} {
		got := awaitFiltered(t, src, feed.Filter{Categories: tc.cats}, len(tc.want))
		require.Equal(t, tc.want, nilIfEmpty(ids(got)), "categories %q", tc.cats)
	}
	_, err := src.ReadFeed(t.Context(), events.Token{}, feed.Filter{Categories: []string{""}}, 1)
	require.Error(t, err, "an empty category is refused, not read as everything")
}

func nilIfEmpty(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func testReadFeedPartitions(t *testing.T, src feed.Source, s events.Store) {
	const streams = 24
	n := 0
	for i := range streams {
		stream := fmt.Sprintf("p%d-%d", i%5, i)
		evs := []events.Event{placed("o", i)}
		if i%3 == 0 {
			// Correlated events spread over streams.
			evs[0].Metadata.CorrelationID = fmt.Sprintf("corr-%d", i%4)
		}
		mustAppend(t, s, stream, events.NoStream, evs...)
		n++
	}
	all := awaitAll(t, s, n)
	for _, key := range []feed.PartitionKey{feed.ByStream, feed.ByCorrelation} {
		for _, count := range []int{1, 3, 7} {
			seen := map[string]int{}
			var total int
			for index := range max(count, 1) {
				want := 0
				for _, env := range all {
					if feed.PartitionOf(feed.KeyOf(key, env), count) == index {
						want++
					}
				}
				got := awaitFiltered(t, src, feed.Filter{Partition: feed.Partition{Index: index, Count: count, Key: key}}, want)
				total += len(got)
				for _, env := range got {
					seen[env.ID]++
					require.Equal(t, index, feed.PartitionOf(feed.KeyOf(key, env), count),
						"the store puts %s (key %q) in the partition PartitionOf names", env.ID, feed.KeyOf(key, env))
				}
			}
			require.Len(t, seen, len(all), "key %s, count %d: every event is in a partition", key, count)
			require.Equal(t, len(all), total, "key %s, count %d: and in only one", key, count)
		}
	}
	_, err := src.ReadFeed(t.Context(), events.Token{}, feed.Filter{Partition: feed.Partition{Index: 3, Count: 3}}, 1)
	require.Error(t, err, "an index outside the count is refused")
}

func testReadFeedScannedTo(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	b, err := src.ReadFeed(ctx, events.Token{}, feed.Filter{}, 10)
	require.NoError(t, err)
	require.True(t, b.ScannedTo.IsZero(), "nothing readable: the zero token")

	mustAppend(t, s, "a-1", events.NoStream, placed("a", 1))
	mustAppend(t, s, "b-1", events.NoStream, placed("b", 1), placed("b", 2), placed("b", 3))
	all := awaitAll(t, s, 4)
	a, bs := feed.Filter{Categories: []string{"a"}}, feed.Filter{Categories: []string{"b"}}

	b, err = src.ReadFeed(ctx, events.Token{}, a, 10)
	require.NoError(t, err)
	require.Equal(t, []string{all[0].ID}, ids(b.Events))
	require.Equal(t, all[3].Token, b.ScannedTo, "short of its limit, the read looked to the end")

	b, err = src.ReadFeed(ctx, events.Token{}, bs, 2)
	require.NoError(t, err)
	require.Equal(t, []string{all[1].ID, all[2].ID}, ids(b.Events))
	require.Equal(t, all[2].Token, b.ScannedTo, "at its limit, the read looked no further than its last event")

	b, err = src.ReadFeed(ctx, all[0].Token, a, 10)
	require.NoError(t, err)
	require.Empty(t, b.Events)
	require.Equal(t, all[3].Token, b.ScannedTo, "no match, but the read moved past the unmatched events")

	b, err = src.ReadFeed(ctx, all[3].Token, a, 10)
	require.NoError(t, err)
	require.Empty(t, b.Events)
	require.True(t, b.ScannedTo.IsZero(), "nothing after the end")
}

// recordingHook wants orderPlaced events: it marks their metadata and
// stores a row per event, and fails on an amount of 666.
type recordingHook struct{}

func (recordingHook) Wants(types []string) bool { return slices.Contains(types, orderPlacedType) }

func (recordingHook) Before(_ context.Context, _ feed.Unit, _ string, evs []events.Event) ([]events.Event, error) {
	out := slices.Clone(evs)
	for i := range out {
		out[i].Metadata.Extra = map[string]string{"hooked": "yes"}
	}
	return out, nil
}

var errHook = errors.New("hook refuses 666")

func (recordingHook) After(ctx context.Context, u feed.Unit, envs []events.Envelope) error {
	if _, ok := events.UnitFromContext(ctx); !ok {
		return errors.New("the hook's context carries no unit")
	}
	for _, env := range envs {
		var p orderPlaced
		if err := json.Unmarshal(env.Payload, &p); err != nil {
			return err
		}
		if p.Amount == 666 {
			return errHook
		}
		if err := u.Rows().Put(ctx, "hook", "t", env.ID, env.Payload, env.Token); err != nil {
			return err
		}
	}
	return nil
}

func testAppendHooks(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	hs, ok := src.(feed.HookedSource)
	require.True(t, ok, "%T does not implement feed.HookedSource", src)
	remove := hs.AddAppendHook(recordingHook{})
	hookRows := func() []string {
		t.Helper()
		rows, err := src.Rows().List(ctx, "hook", "t", feed.RowQuery{})
		require.NoError(t, err)
		return keys(rows)
	}

	res := mustAppend(t, s, "order-1", events.NoStream, placed("1", 1))
	require.Equal(t, []string{res.EventIDs[0]}, hookRows(), "an append outside a unit runs the hook in a unit of its own")
	got, err := s.ReadStream(ctx, "order-1", 1, 0)
	require.NoError(t, err)
	require.Equal(t, "yes", got[0].Metadata.Extra["hooked"], "Before's events are stored")

	mustAppend(t, s, "counter-1", events.NoStream, events.Event{Data: counterBumped{N: 1}})
	require.Len(t, hookRows(), 1, "an append the hook does not want skips it")

	_, err = s.Append(ctx, "order-1", events.Exactly(1), placed("1", 666))
	require.ErrorIs(t, err, errHook)
	v, err := s.StreamVersion(ctx, "order-1")
	require.NoError(t, err)
	require.Equal(t, int64(1), v, "a failing hook undoes the append")

	u := begin(t, src)
	r1, err := u.Append(ctx, "order-2", events.NoStream, placed("2", 1))
	require.NoError(t, err)
	_, err = u.Append(ctx, "order-2", events.Exactly(1), placed("2", 666))
	require.ErrorIs(t, err, errHook)
	r2, err := u.Append(ctx, "order-2", events.Exactly(1), placed("2", 2))
	require.NoError(t, err, "the unit stays usable after a hook failed, without the failed append")
	require.NoError(t, u.Commit(ctx))
	require.ElementsMatch(t, []string{res.EventIDs[0], r1.EventIDs[0], r2.EventIDs[0]}, hookRows())

	remove()
	remove()
	mustAppend(t, s, "order-3", events.NoStream, placed("3", 1))
	require.Len(t, hookRows(), 3, "a removed hook no longer runs")
}

// randomBadFilterName returns a category or type name that no stream id or
// type name can be: one holding NUL or bytes that are not UTF-8, anywhere.
func randomBadFilterName(r *rand.Rand) string {
	for {
		good := []rune(filterSegments[r.IntN(len(filterSegments))] + filterSegments[r.IntN(len(filterSegments))])
		at := r.IntN(len(good) + 1)
		bad := []string{"\x00", string([]byte{byte(0x80 + r.IntN(0x80))}), "\xed\xa0\x80", "\xc0\xaf", "\xf4\x90\x80\x80", "\xe2\x82"}[r.IntN(6)]
		if name := string(good[:at]) + bad + string(good[at:]); !utf8.ValidString(name) || strings.Contains(name, "\x00") {
			return name
		}
	}
}

// testReadFeedRefusesBadNames: a filter naming a category or type that
// holds NUL or is not valid UTF-8 is refused with ErrInvalidEvent by both
// stores, before any SQL runs (PostgreSQL cannot take such a parameter)
// and before a done context is looked at, rather than matching nothing in
// memory and failing every read on PostgreSQL.
func testReadFeedRefusesBadNames(t *testing.T, src feed.Source, s events.Store) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	mustAppend(t, s, "a-1", events.NoStream, placed("o", 1))
	awaitAll(t, s, 1)
	done := canceledContext(t)
	for range 100 {
		var f feed.Filter
		good := []string{"a", orderPlacedType, "é-🚀"}
		for range r.IntN(3) {
			f.Categories = append(f.Categories, good[r.IntN(len(good))])
		}
		for range r.IntN(3) {
			f.Types = append(f.Types, good[r.IntN(len(good))])
		}
		bad := randomBadFilterName(r)
		if r.IntN(2) == 0 {
			f.Categories = slices.Insert(f.Categories, r.IntN(len(f.Categories)+1), bad)
		} else {
			f.Types = slices.Insert(f.Types, r.IntN(len(f.Types)+1), bad)
		}
		if r.IntN(3) == 0 {
			f.Partition = feed.Partition{Index: r.IntN(2), Count: 2}
		}
		wrong := "UTF-8"
		if strings.Contains(bad, "\x00") {
			wrong = "NUL"
		}
		for _, ctx := range []context.Context{t.Context(), done} {
			_, err := src.ReadFeed(ctx, events.Token{}, f, 1+r.IntN(10))
			require.ErrorIs(t, err, events.ErrInvalidEvent, "seed %d: ReadFeed(%s)", seed, describeFilter(f))
			require.NotContains(t, err.Error(), "SQLSTATE", "seed %d: refused before any SQL", seed)
			require.ErrorContains(t, err, wrong, "seed %d: the error says what is wrong", seed)
		}
	}
}
