package memstore

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// referenceRead is what a feed read answers by its definition, over the
// whole log: the readable events after the cursor that match, up to limit;
// how far it looked (its last event at the limit, else the last readable
// event); and, short of the limit, whether an event waits behind the
// horizon: any event when the read returned none (a filtered reader moves
// past unmatched events too), else a matching one.
func referenceRead(log []*events.Envelope, bound events.Token, held bool, after events.Token, f feed.Filter, limit int) feed.Batch {
	var readable, matching []events.Envelope
	waiting, behind := false, false
	for _, e := range log {
		env := *e
		switch {
		case !env.Token.After(after):
		case held && !env.Token.Before(bound):
			behind = true
			waiting = waiting || f.Match(env)
		default:
			readable = append(readable, env)
			if f.Match(env) {
				matching = append(matching, cloneEnvelope(env))
			}
		}
	}
	b := feed.Batch{Events: []events.Envelope{}}
	if len(matching) >= limit {
		b.Events = append(b.Events, matching[:limit]...)
		b.ScannedTo = matching[limit-1].Token
		return b
	}
	b.Events = append(b.Events, matching...)
	if len(readable) > 0 {
		b.ScannedTo = readable[len(readable)-1].Token
	}
	b.Pending = waiting || len(matching) == 0 && behind
	return b
}

// readOutcomes counts what the random reads covered, so the property test
// fails when its generator stops reaching a case.
type readOutcomes struct {
	pending, full, emptyButMoved, held, insertedMidLog int
}

func TestReadFeedMatchesItsDefinition(t *testing.T) {
	base := rand.Uint64()
	t.Logf("base seed %d (iteration i runs seed base+i)", base)
	var seen readOutcomes
	for i := range 30 {
		readPropertyIteration(t, base+uint64(i), &seen)
	}
	require.Positive(t, seen.pending, "some reads found a match behind an open unit")
	require.Positive(t, seen.full, "some reads stopped at their limit")
	require.Positive(t, seen.emptyButMoved, "some reads matched nothing but moved ScannedTo")
	require.Positive(t, seen.held, "some reads ran while a unit was open")
	require.Positive(t, seen.insertedMidLog, "some units committed behind newer events")
}

// readWorld builds a random log through appends and units, some left open.
type readWorld struct {
	t    *testing.T
	r    *rand.Rand
	seed uint64
	s    *Store
	open []*unit
}

var (
	propTypes   = []string{"placed", "paid", "shipped", "rare"}
	propRoots   = []string{"order", "ord", "pay", "a_b"}
	propFilters = []string{"order", "order-1", "order-1-x", "ord", "pay", "a_b", "a_b-2", "p", "none"}
)

func (w *readWorld) stream() string {
	root := propRoots[w.r.IntN(len(propRoots))]
	switch w.r.IntN(4) {
	case 0:
		return root
	case 1:
		return fmt.Sprintf("%s-%d-x", root, w.r.IntN(3))
	default:
		return fmt.Sprintf("%s-%d", root, w.r.IntN(6))
	}
}

func (w *readWorld) events() []events.Event {
	evs := make([]events.Event, 1+w.r.IntN(3))
	for i := range evs {
		typ := propTypes[w.r.IntN(len(propTypes)-1)]
		if w.r.IntN(10) == 0 {
			typ = "rare"
		}
		evs[i] = events.Event{
			Data:     events.Raw{Type: typ, Payload: json.RawMessage(`{}`)},
			Metadata: events.Metadata{CorrelationID: []string{"", "c1", "c2", "c3"}[w.r.IntN(4)]},
		}
	}
	return evs
}

// owner returns the open unit holding stream, nil when none does.
func (w *readWorld) owner(stream string) *unit {
	w.s.mu.RLock()
	defer w.s.mu.RUnlock()
	return w.s.owners[stream]
}

// step appends, opens, commits or rolls back a unit at random.
func (w *readWorld) step(seen *readOutcomes) {
	ctx := w.t.Context()
	stream := w.stream()
	switch k := w.r.IntN(10); {
	case k < 5:
		if w.owner(stream) == nil {
			_, err := w.s.Append(ctx, stream, events.AnyVersion, w.events()...)
			require.NoError(w.t, err, "seed %d", w.seed)
		}
	case k < 7:
		if len(w.open) == 0 || w.r.IntN(3) == 0 {
			w.open = append(w.open, w.s.newUnit())
		}
		u := w.open[w.r.IntN(len(w.open))]
		if o := w.owner(stream); o == nil || o == u {
			_, err := u.Append(ctx, stream, events.AnyVersion, w.events()...)
			require.NoError(w.t, err, "seed %d", w.seed)
		}
	case k < 9 && len(w.open) > 0:
		i := w.r.IntN(len(w.open))
		u := w.open[i]
		w.open = slices.Delete(w.open, i, i+1)
		if k == 8 {
			require.NoError(w.t, u.Rollback(ctx), "seed %d", w.seed)
			return
		}
		w.s.mu.RLock()
		midLog := u.firstSeq != 0 && len(w.s.log) > 0 && w.s.log[len(w.s.log)-1].Token.Major() > u.firstSeq
		w.s.mu.RUnlock()
		if midLog {
			seen.insertedMidLog++
		}
		require.NoError(w.t, u.Commit(ctx), "seed %d", w.seed)
	}
}

// filter returns a random filter: types, categories (dashed ones too) and
// partitions, alone or together, names that match nothing and repeats.
func (w *readWorld) filter() feed.Filter {
	var f feed.Filter
	pick := func(from []string) []string {
		out := make([]string, 1+w.r.IntN(3))
		for i := range out {
			out[i] = from[w.r.IntN(len(from))]
		}
		return out
	}
	if w.r.IntN(3) > 0 {
		f.Types = pick(append(slices.Clone(propTypes), "none"))
	}
	if w.r.IntN(3) == 0 {
		f.Categories = pick(propFilters)
	}
	if w.r.IntN(3) == 0 {
		f.Partition = feed.Partition{Count: 2 + w.r.IntN(3), Key: []feed.PartitionKey{"", feed.ByStream, feed.ByCorrelation}[w.r.IntN(3)]}
		f.Partition.Index = w.r.IntN(f.Partition.Count)
	}
	return f
}

// cursor returns a random position: the start, an event's token, tokens
// between and past events, or one another store could have minted.
func (w *readWorld) cursor() events.Token {
	w.s.mu.RLock()
	defer w.s.mu.RUnlock()
	seq := w.r.Uint64N(w.s.nextSeq + 2)
	switch w.r.IntN(5) {
	case 0:
		return events.Token{}
	case 1:
		if len(w.s.log) > 0 {
			return w.s.log[w.r.IntN(len(w.s.log))].Token
		}
		return events.Token{}
	case 2:
		return events.MakeToken(seq, seq+1)
	case 3:
		return events.MakeToken(seq, max(seq, 1)-1)
	default:
		return events.MakeToken(seq, seq)
	}
}

// check compares reads of random filters, cursors and limits with the log
// scan.
func (w *readWorld) check(seen *readOutcomes) {
	ctx := w.t.Context()
	for range 25 {
		after, f, limit := w.cursor(), w.filter(), 1+w.r.IntN(6)
		if w.r.IntN(8) == 0 {
			limit = 0
		}
		w.s.mu.RLock()
		bound, held := w.s.horizonLocked()
		want := referenceRead(w.s.log, bound, held, after, f, defaultedLimit(limit))
		w.s.mu.RUnlock()
		got, err := w.s.ReadFeed(ctx, after, f, limit)
		require.NoError(w.t, err)
		require.Equal(w.t, want, got, "seed %d: read after %v with %+v, limit %d, horizon %v (held %v)", w.seed, after, f, limit, bound, held)
		switch {
		case got.Pending:
			seen.pending++
		case len(got.Events) == limit:
			seen.full++
		case len(got.Events) == 0 && got.ScannedTo.After(after):
			seen.emptyButMoved++
		}
		if held {
			seen.held++
		}
	}
}

func defaultedLimit(limit int) int {
	if limit <= 0 {
		return events.DefaultReadLimit
	}
	return limit
}

func readPropertyIteration(t *testing.T, seed uint64, seen *readOutcomes) {
	t.Helper()
	s, err := New(nil)
	require.NoError(t, err)
	defer s.Close()
	w := &readWorld{t: t, r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), seed: seed, s: s}
	for i := range 200 {
		w.step(seen)
		if i%10 == 9 {
			w.check(seen)
		}
	}
	w.check(seen)
	for _, u := range w.open {
		require.NoError(t, u.Commit(t.Context()), "seed %d", seed)
	}
	w.open = nil
	w.check(seen)
}

// TestFilteredReadExaminesWhatItReturns holds a read of a rare type, behind
// an open unit, on a log of 100,000 events to the events it returns: it
// never walks the events of other types, before or behind the horizon.
func TestFilteredReadExaminesWhatItReturns(t *testing.T) {
	ctx := t.Context()
	s, err := New(nil)
	require.NoError(t, err)
	defer s.Close()
	batch := func(stream string, rare bool) []events.Event {
		evs := make([]events.Event, events.DefaultMaxEventsPerAppend)
		for i := range evs {
			evs[i] = events.Event{Data: events.Raw{Type: "common", Payload: json.RawMessage(`{}`)}}
		}
		if rare {
			evs[len(evs)-1].Data = events.Raw{Type: "rare", Payload: json.RawMessage(`{}`)}
		}
		_, err := s.Append(ctx, stream, events.AnyVersion, evs...)
		require.NoError(t, err)
		return evs
	}
	// 50,000 readable events with a rare one in every tenth thousand, then
	// an open unit's reservation and 50,000 events behind it, the last one
	// rare.
	for i := range 50 {
		batch(fmt.Sprintf("bulk-%d", i), i%10 == 9)
	}
	u := s.newUnit()
	_, err = u.Append(ctx, "held-1", events.NoStream, events.Event{Data: events.Raw{Type: "common", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)
	defer func() { _ = u.Rollback(ctx) }()
	for i := range 50 {
		batch(fmt.Sprintf("late-%d", i), i == 49)
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	require.Len(t, s.log, 100_000)
	bound, held := s.horizonLocked()
	require.True(t, held)
	rare := feed.Filter{Types: []string{"rare"}}

	b, examined := s.readLocked(events.Token{}, rare, 100)
	require.Equal(t, referenceRead(s.log, bound, held, events.Token{}, rare, 100), b)
	require.Len(t, b.Events, 5)
	require.True(t, b.Pending)
	require.Equal(t, s.log[49_999].Token, b.ScannedTo, "the read looked at every readable event")
	require.Equal(t, len(b.Events)+1, examined, "the rare events and the first rare one behind the horizon")

	b, examined = s.readLocked(b.Events[4].Token, rare, 100)
	require.Empty(t, b.Events)
	require.True(t, b.Pending)
	require.Zero(t, examined, "any event behind the horizon is pending for a read that returned none")

	_, scanned := s.scan(0, bound, held, rare, 100)
	require.Equal(t, len(s.log), scanned, "without the index the same read walks the whole log")

	byCategory := feed.Filter{Categories: []string{"held", "late"}}
	b, examined = s.readLocked(events.Token{}, byCategory, 100)
	require.Equal(t, referenceRead(s.log, bound, held, events.Token{}, byCategory, 100), b)
	require.Empty(t, b.Events)
	require.True(t, b.Pending)
	require.Zero(t, examined, "the events behind the horizon are pending, matching or not")
}

// BenchmarkReadFilteredHeld reads a rare type behind an open unit on a log
// of 20,000 events from its 10,000th, as a saga's consumers do while
// other units are open.
func BenchmarkReadFilteredHeld(b *testing.B) {
	ctx := context.Background()
	s, err := New(nil)
	require.NoError(b, err)
	defer s.Close()
	add := func(stream, typ string) {
		_, err := s.Append(ctx, stream, events.AnyVersion, events.Event{Data: events.Raw{Type: typ, Payload: json.RawMessage(`{}`)}})
		require.NoError(b, err)
	}
	for i := range 20_000 {
		typ := "common"
		if i%1000 == 0 {
			typ = "rare"
		}
		add(fmt.Sprintf("s-%d", i%100), typ)
	}
	u := s.newUnit()
	_, err = u.Append(ctx, "held-1", events.NoStream, events.Event{Data: events.Raw{Type: "common", Payload: json.RawMessage(`{}`)}})
	require.NoError(b, err)
	defer func() { _ = u.Rollback(ctx) }()
	for i := range 100 {
		add(fmt.Sprintf("s-%d", i), "common")
	}
	tail, err := s.ReadAll(ctx, events.Token{}, 20_000)
	require.NoError(b, err)
	after := tail[9_999].Token
	rare := feed.Filter{Types: []string{"rare"}}
	b.ResetTimer()
	for range b.N {
		if _, err := s.ReadFeed(ctx, after, rare, 100); err != nil {
			b.Fatal(err)
		}
	}
}
