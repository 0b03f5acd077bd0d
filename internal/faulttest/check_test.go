package faulttest_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/internal/faulttest"
)

func newMemstore(t *testing.T) *memstore.Store {
	t.Helper()
	s, err := memstore.New(&memstore.Config{Registry: registry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func seqKey(e events.Envelope) string {
	var a Added
	_ = json.Unmarshal(e.Payload, &a)
	return strconv.Itoa(a.Seq)
}

// appendAdded appends Added{Seq: seq} under id and returns the writer's
// record of it.
func appendAdded(t *testing.T, s events.Store, id string, seq int) faulttest.Append {
	t.Helper()
	res, err := s.Append(t.Context(), "acct-1", events.AnyVersion, events.Event{ID: id, Data: Added{Seq: seq, Account: "acct-1", Amount: 1}})
	require.NoError(t, err)
	return faulttest.Append{Index: seq, StreamID: "acct-1", EventIDs: res.EventIDs, Token: res.Token}
}

func TestCheckAppendsFindsLostAndDoubled(t *testing.T) {
	t.Parallel()
	s := newMemstore(t)
	a0 := appendAdded(t, s, "00000000-0000-4000-8000-000000000000", 0)
	a1 := appendAdded(t, s, "00000000-0000-4000-8000-000000000001", 1)
	ok := faulttest.WriterResult{Confirmed: []faulttest.Append{a0, a1}}
	rep, err := faulttest.CheckAppends(t.Context(), s, ok, seqKey)
	require.NoError(t, err)
	require.Equal(t, faulttest.AppendReport{Confirmed: 2, Stored: 2}, rep)

	lost := ok
	lost.Confirmed = append(lost.Confirmed, faulttest.Append{Index: 2, EventIDs: []string{"00000000-0000-4000-8000-000000000002"}})
	rep, err = faulttest.CheckAppends(t.Context(), s, lost, seqKey)
	require.ErrorContains(t, err, "confirmed but is not stored")
	require.Equal(t, 1, rep.Lost)

	// The same logical append stored again under a fresh id: what a writer
	// that retried without keeping its ids would do.
	again := appendAdded(t, s, "00000000-0000-4000-8000-000000000003", 1)
	doubled := ok
	doubled.Confirmed = append(doubled.Confirmed, again)
	rep, err = faulttest.CheckAppends(t.Context(), s, doubled, seqKey)
	require.ErrorContains(t, err, `key "1" is stored 2 times`)
	require.Equal(t, 1, rep.Doubled)

	_, err = faulttest.CheckAppends(t.Context(), s, ok, seqKey)
	require.ErrorContains(t, err, "stored but the writer never appended it")

	unknown := doubled
	unknown.Confirmed = unknown.Confirmed[:2]
	unknown.Unknown = []faulttest.Append{again}
	rep, err = faulttest.CheckAppends(t.Context(), s, unknown, nil)
	require.NoError(t, err, "an unknown append may be stored once")
	require.Equal(t, 1, rep.UnknownStored)
}

// lossyStore commits every append but loses the reply of every other
// one, as a connection cut after the commit does.
type lossyStore struct {
	events.Store
	n atomic.Int64
}

var errReplyLost = errors.New("unexpected EOF (injected after the commit)")

func (s *lossyStore) Append(ctx context.Context, stream string, exp events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	res, err := s.Store.Append(ctx, stream, exp, evs...)
	if err == nil && s.n.Add(1)%2 == 0 {
		return events.AppendResult{}, errReplyLost
	}
	return res, err
}

func TestWriterResolvesLostReplies(t *testing.T) {
	t.Parallel()
	s := newMemstore(t)
	w, err := faulttest.StartWriter(t.Context(), &faulttest.WriterConfig{
		Store:    &lossyStore{Store: s},
		Pace:     time.Millisecond,
		RetryMin: time.Millisecond,
		Next: func(i int) (string, []events.Event) {
			return "acct-1", []events.Event{{Data: Added{Seq: i, Account: "acct-1", Amount: 1}}}
		},
	})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return w.Confirmed() >= 50 }, 10*time.Second, time.Millisecond)
	res := w.Stop()
	require.NotZero(t, res.Retries, "replies were lost, so the writer retried")
	require.Empty(t, res.Unknown)
	rep, err := faulttest.CheckAppends(t.Context(), s, res, seqKey)
	require.NoError(t, err)
	require.Zero(t, rep.Doubled)
	require.Equal(t, len(res.Confirmed), rep.Stored)
}

func TestDiff(t *testing.T) {
	t.Parallel()
	want := map[string]Total{"a": {Sum: 1, Count: 1}, "b": {Sum: 2, Count: 1}}
	require.NoError(t, faulttest.Diff("totals", want, map[string]Total{"a": {1, 1}, "b": {2, 1}}))
	err := faulttest.Diff("totals", want, map[string]Total{"a": {2, 2}, "c": {1, 1}})
	require.ErrorContains(t, err, "3 problem(s)")
	require.ErrorContains(t, err, "a: got {Sum:2 Count:2}, want {Sum:1 Count:1}")
	require.ErrorContains(t, err, "b: missing")
	require.ErrorContains(t, err, "c: unexpected")
}

// horizonStore serves ReadAll only up to a horizon, as PostgreSQL's feed
// does while an open transaction holds it, and lifts it after stalls
// reads that found nothing (never, when stalls is negative).
type horizonStore struct {
	events.Store
	horizon events.Token
	stalls  atomic.Int32
}

func (s *horizonStore) ReadAll(ctx context.Context, after events.Token, limit int) ([]events.Envelope, error) {
	page, err := s.Store.ReadAll(ctx, after, limit)
	if err != nil || s.stalls.Load() == 0 {
		return page, err
	}
	var out []events.Envelope
	for _, e := range page {
		if s.horizon.Before(e.Token) {
			break
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		s.stalls.Add(-1)
	}
	return out, nil
}

// TestCheckAppendsWaitsForTheHorizon: a confirmed append the feed does not
// show yet (an open transaction holds the horizon before it) is waited
// for, not reported lost; one it never shows is an error naming the
// horizon.
func TestCheckAppendsWaitsForTheHorizon(t *testing.T) {
	t.Parallel()
	s := newMemstore(t)
	a0 := appendAdded(t, s, "00000000-0000-4000-8000-000000000000", 0)
	a1 := appendAdded(t, s, "00000000-0000-4000-8000-000000000001", 1)
	res := faulttest.WriterResult{Confirmed: []faulttest.Append{a0, a1}}

	held := &horizonStore{Store: s, horizon: a0.Token}
	held.stalls.Store(3)
	rep, err := faulttest.CheckAppends(t.Context(), held, res, seqKey)
	require.NoError(t, err)
	require.Equal(t, faulttest.AppendReport{Confirmed: 2, Stored: 2}, rep)
	require.Zero(t, held.stalls.Load(), "every stall was read through")

	stuck := &horizonStore{Store: s, horizon: a0.Token}
	stuck.stalls.Store(-1)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err = faulttest.CheckAppends(ctx, stuck, res, seqKey)
	require.ErrorContains(t, err, "holds the read horizon")
	require.ErrorIs(t, err, context.DeadlineExceeded)
}
