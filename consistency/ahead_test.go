package consistency_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

// TestWait_TokenPastEveryEventIsAhead: a stale wait whose target lies past
// every stored event says so (ReasonAhead, Behind 0) instead of reporting a
// deadline "0 events behind"; a target that real events lie before keeps
// ReasonDeadline and counts them.
func TestWait_TokenPastEveryEventIsAhead(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, seed))
	st, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	n := 2 + r.IntN(20)
	var toks []events.Token
	for i := range n {
		res, err := st.Append(t.Context(), fmt.Sprintf("s-%d", r.IntN(3)), events.AnyVersion,
			events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
		require.NoError(t, err, "append %d", i)
		toks = append(toks, res.Tokens...)
	}
	head := toks[len(toks)-1]
	tr := setup(t, &consistency.TrackerConfig{Counter: st, MaxTimeout: 20 * time.Millisecond})
	at := r.IntN(n)
	tr.Advance("orders", toks[at])
	msg := fmt.Sprintf("seed %d: %d events, checkpoint at event %d", seed, n, at+1)

	// Past every event: by a minor step, a major step, or far.
	for _, target := range []events.Token{
		events.MakeToken(head.Major(), head.Minor()+1+uint64(r.IntN(5))),
		events.MakeToken(head.Major()+1+uint64(r.IntN(1000)), 0),
		events.MakeToken(1<<62, 1<<62),
	} {
		got, err := tr.Wait(context.Background(), target, "orders")
		require.NoError(t, err, msg)
		require.True(t, got.Stale, msg)
		if at == n-1 {
			require.Equal(t, consistency.ReasonAhead, got.Reason, "%s: nothing stored lies between the checkpoint and %s", msg, target)
			require.Zero(t, got.Behind, msg)
		} else {
			require.Equal(t, consistency.ReasonDeadline, got.Reason, "%s: stored events lie before %s", msg, target)
			require.Equal(t, int64(n-1-at), got.Behind, msg)
		}
	}

	// A real token after the checkpoint is behind, never ahead.
	if at < n-1 {
		want := at + 1 + r.IntN(n-1-at)
		got, err := tr.Wait(context.Background(), toks[want], "orders")
		require.NoError(t, err, msg)
		require.True(t, got.Stale, msg)
		require.Equal(t, consistency.ReasonDeadline, got.Reason, msg)
		require.Equal(t, int64(want-at), got.Behind, msg)
	}
}

// TestWait_AheadNeedsACheckpointAtTheHead runs the ahead case on every
// run: the checkpoint at the newest event, and a target past it.
func TestWait_AheadNeedsACheckpointAtTheHead(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	res, err := st.Append(t.Context(), "s-1", events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
	require.NoError(t, err)
	tr := setup(t, &consistency.TrackerConfig{Counter: st, MaxTimeout: 20 * time.Millisecond})
	tr.Advance("orders", res.Token)
	got, err := tr.Wait(context.Background(), events.MakeToken(res.Token.Major()+1, 0), "orders")
	require.NoError(t, err)
	require.Equal(t, consistency.ReasonAhead, got.Reason)
	require.Zero(t, got.Behind)

	// Without a Counter nothing can tell: a deadline, Behind unknown.
	plain := setup(t, &consistency.TrackerConfig{MaxTimeout: 20 * time.Millisecond})
	plain.Advance("orders", res.Token)
	got, err = plain.Wait(context.Background(), events.MakeToken(res.Token.Major()+1, 0), "orders")
	require.NoError(t, err)
	require.Equal(t, consistency.ReasonDeadline, got.Reason)
	require.Equal(t, int64(-1), got.Behind)
}
