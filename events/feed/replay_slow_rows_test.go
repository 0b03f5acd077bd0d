package feed_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// slowRows answers List no sooner than delay, as a busy database does,
// and fails it when the caller's context ends first, as pgx does.
type slowRows struct {
	feed.Rows
	delay time.Duration
}

func (r slowRows) List(ctx context.Context, ns, table string, q feed.RowQuery) ([]feed.Row, error) {
	select {
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	case <-time.After(r.delay):
	}
	return r.Rows.List(ctx, ns, table, q)
}

type slowRowsSource struct {
	feed.Source
	rows feed.Rows
}

func (s slowRowsSource) Rows() feed.Rows { return s.rows }

// A processor that checks often for replay requests, against a database
// slower to answer than the check interval, still carries them out: the
// look-up is not bounded by the interval. (With ReplayCheckInterval at 10
// ms, every look-up on a loaded machine ran out of time, and a request
// waited for ever.)
func TestReplayRequestsAreFoundWhenLookUpsOutlastTheInterval(t *testing.T) {
	t.Parallel()
	store, mem := newMemstore(t)
	src := slowRowsSource{Source: mem, rows: slowRows{Rows: mem.Rows(), delay: 30 * time.Millisecond}}
	ctx := t.Context()
	res, err := store.Append(ctx, "slow-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
	require.NoError(t, err)
	var broken atomic.Bool
	broken.Store(true)
	var applied atomic.Int64
	p, err := feed.NewProcessor(src, &feed.ProcessorConfig{
		Name: "slow", MaxAttempts: 1, OnFailure: feed.DeadLetter, ReplayCheckInterval: 5 * time.Millisecond,
		Subscriber: feed.SubscriberConfig{NackBackoffMin: time.Millisecond, NackBackoffMax: 2 * time.Millisecond},
	}, func(context.Context, events.Envelope) error {
		if broken.Load() {
			return errors.New("broken")
		}
		applied.Add(1)
		return nil
	})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	defer func() {
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		require.NoError(t, p.Close())
	}()
	var key string
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		dls, err := p.DeadLetters(ctx, 0)
		require.NoError(c, err)
		require.Len(c, dls, 1)
		key = dls[0].Checkpoint + "/" + res.EventIDs[0]
	}, 20*time.Second, 5*time.Millisecond)
	broken.Store(false)
	_, err = feed.RequestReplay(ctx, mem.Rows(), key)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return applied.Load() == 1 }, 20*time.Second, 5*time.Millisecond,
		"the replay request was never carried out")
}
