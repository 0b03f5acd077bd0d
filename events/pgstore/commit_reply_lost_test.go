package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/faultproxy"
)

// TestConsumerCommitWhoseReplyIsLostIsNotAppliedAgain: a consumer unit's
// commit reaches the server and commits, but its reply is lost (the
// connection is cut). The consumer redelivers the unit's events; the unit
// doing so begins where the checkpoint no longer is, so its commit is
// refused and the consumer takes its lease again from the stored
// checkpoint: each event counted once (a per-event counter row), for a
// random unit size and a random event whose commit loses its reply.
func TestConsumerCommitWhoseReplyIsLostIsNotAppliedAgain(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	b := setupFaults(t, noRetry)
	ctx := context.Background()
	n := 3 + rng.IntN(8)
	target := rng.IntN(n)
	for i := range n {
		_, err := b.direct.Append(ctx, "cut-"+strconv.Itoa(i), events.NoStream, rawEvent(i))
		require.NoError(t, err)
	}
	marker := fmt.Sprintf("lost-commit-marker-%d", seed)
	fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains(marker)})
	done := make(chan struct{})
	p, err := feed.NewProcessor(b.store, &feed.ProcessorConfig{
		Name:        "cutcount",
		CommitBatch: 1 + rng.IntN(4),
		Subscriber:  feed.SubscriberConfig{NackBackoffMin: time.Millisecond, NackBackoffMax: 2 * time.Millisecond},
	}, func(ctx context.Context, env events.Envelope) error {
		eu, _ := events.UnitFromContext(ctx)
		u, ok := eu.(feed.Unit)
		if !ok {
			return errors.New("the handler runs without a unit")
		}
		rows := u.Rows()
		row, ok, err := rows.Get(ctx, "review", "counts", "total", feed.LockNone)
		if err != nil {
			return err
		}
		total := 0
		if ok {
			require.NoError(t, json.Unmarshal(row.Value, &total))
		}
		total++
		if err := rows.Put(ctx, "review", "counts", "total", json.RawMessage(strconv.Itoa(total)), env.Token); err != nil {
			return err
		}
		var body struct{ N int }
		_ = json.Unmarshal(env.Payload, &body)
		if body.N == target {
			if err := rows.Put(ctx, "review", "marks", marker, json.RawMessage(`true`), env.Token); err != nil {
				return err
			}
		}
		if total >= n && body.N == n-1 {
			select {
			case <-done:
			default:
				close(done)
			}
		}
		return nil
	})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- p.Run(rctx) }()
	select {
	case <-fired:
	case <-time.After(20 * time.Second):
		t.Fatal("the commit with the marker was never sent")
	}
	// Wait until the consumer's checkpoint reaches the last event.
	var last events.Token
	all, err := b.direct.ReadFeed(ctx, events.Token{}, feed.Filter{}, 100)
	require.NoError(t, err)
	last = all.Events[len(all.Events)-1].Token
	require.Eventually(t, func() bool {
		pos, err := b.direct.Checkpoints().Position(ctx, "cutcount")
		return err == nil && !pos.Before(last)
	}, 20*time.Second, 10*time.Millisecond)
	cancel()
	if err := <-ran; err != nil {
		require.ErrorIs(t, err, context.Canceled)
	}
	row, ok, err := b.direct.Rows().Get(ctx, "review", "counts", "total", feed.LockNone)
	require.NoError(t, err)
	require.True(t, ok)
	var total int
	require.NoError(t, json.Unmarshal(row.Value, &total))
	require.Equal(t, n, total, "each of the %d events counted once (target %d)", n, target)
}
