package eventstoretest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// answersAtOnce bounds an append that must not wait for an open unit: a
// store that waits fails the test with its context's error instead of
// hanging until the unit ends.
const answersAtOnce = 5 * time.Second

// testAppendBesideOpenUnit checks the rule for an append to a stream an
// open unit appended to (events.Unit): its expectation is judged on the
// committed events (and the appender's own unit's, of which it has none
// here), never on the open unit's. When they do not meet it, it fails at
// once with the committed version, even if the unit will leave the stream
// where it expects it (Exactly of the unit's last version, StreamExists on
// a stream the unit created). When they do, its events would take the
// versions the unit holds, so it waits for the unit to end and is judged
// again on what the unit left: it lands after a commit if that still meets
// its expectation, and after a rollback where the unit's events would
// have gone. Over random committed lengths, unit appends, expectations,
// appenders (Append, or another unit's Append) and endings.
func testAppendBesideOpenUnit(t *testing.T, src feed.Source, s events.Store) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	for round := range 12 {
		appendBesideOpenUnit(t, src, s, rng, round%6, fmt.Sprintf("round %d, seed %d", round, seed), fmt.Sprintf("order-beside%d", round))
	}
}

// appendBesideOpenUnit is one round of testAppendBesideOpenUnit, on stream,
// with the expectation of index expectation.
func appendBesideOpenUnit(t *testing.T, src feed.Source, s events.Store, rng *rand.Rand, expectation int, round, stream string) {
	ctx := t.Context()
	before := rng.IntN(3)
	for i := range before {
		mustAppend(t, s, stream, events.AnyVersion, placed("1", i))
	}
	u := begin(t, src)
	held := 1 + rng.IntN(2)
	for i := range held {
		_, err := u.Append(ctx, stream, events.AnyVersion, placed("1", i))
		require.NoError(t, err)
	}
	after := before + held
	expectations := []events.ExpectedVersion{
		events.AnyVersion, events.StreamExists, events.NoStream,
		events.Exactly(int64(before)), events.Exactly(int64(before + 1)), events.Exactly(int64(after)),
	}
	expected := expectations[expectation]
	appender, what := s, "Append"
	if rng.IntN(3) == 0 {
		// Rolled back once judged, so that no round holds a
		// connection past its end.
		other := begin(t, src)
		defer func() { require.NoError(t, other.Rollback(ctx)) }()
		appender, what = other, "a unit's Append"
	}
	commit := rng.IntN(2) == 0
	msg := fmt.Sprintf("%s with %s, %d events committed and %d in the open unit (%s)", what, expected, before, held, round)

	if !expected.Satisfied(int64(before)) {
		actx, cancel := context.WithTimeout(ctx, answersAtOnce)
		_, err := appender.Append(actx, stream, expected, placed("2", 1))
		cancel()
		requireWrongVersion(t, err, stream, expected, int64(before))
		require.NoError(t, u.Rollback(ctx))
		return
	}

	type result struct {
		res events.AppendResult
		err error
	}
	done := make(chan result, 1)
	go func() {
		res, err := appender.Append(ctx, stream, expected, placed("2", 1))
		done <- result{res, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("%s: an append that would write must wait for the open unit, got %+v, %v", msg, r.res, r.err)
	case <-time.After(50 * time.Millisecond): // proving a wait needs a bound
	}
	left := before
	if commit {
		require.NoError(t, u.Commit(ctx), msg)
		left = after
	} else {
		require.NoError(t, u.Rollback(ctx), msg)
	}
	r := <-done
	if !expected.Satisfied(int64(left)) {
		requireWrongVersion(t, r.err, stream, expected, int64(left))
		return
	}
	require.NoError(t, r.err, "judged again once the unit ended (committed: %v), %s", commit, msg)
	require.Equal(t, int64(left+1), r.res.FirstVersion, msg)
}
