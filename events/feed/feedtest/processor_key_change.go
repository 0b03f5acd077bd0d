package feedtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// appendCorrelated appends n events over streams streams, each with one
// of corrs correlation ids (a different spread than the streams'), and
// returns them as stored.
func appendCorrelated(t *testing.T, s events.Store, prefix string, streams, corrs, n int) []events.Envelope {
	t.Helper()
	for i := range n {
		ev := thing(i)
		ev.Metadata.CorrelationID = fmt.Sprintf("%s-corr-%d", prefix, i%corrs)
		_, err := s.Append(t.Context(), fmt.Sprintf("%s-%d", prefix, i%streams), events.AnyVersion, ev)
		require.NoError(t, err)
	}
	return awaitAllOf(t, s, prefix, n)
}

// testProcessorKeyChangeRefused: a processor that ran split by stream and
// starts again split by correlation at the same count would find each
// partition's checkpoint standing among events it never had: it refuses
// to start, handling nothing, and says what to do.
func testProcessorKeyChangeRefused(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("rekey")
	envs := appendCorrelated(t, s, name, 6, 5, 30)
	last := envs[len(envs)-1].Token
	h := func(ctx context.Context, env events.Envelope) error { return applyOnce(ctx, name, env) }
	first := startProcessor(t, m, src, procConfig(name, 3), h)
	awaitPosition(t, first.p, last)
	first.stop()
	before, err := first.p.Position(t.Context())
	require.NoError(t, err)

	cfg := procConfig(name, 3)
	cfg.PartitionKey = feed.ByCorrelation
	var calls atomic.Int32
	p, err := feed.NewProcessor(src, cfg, func(context.Context, events.Envelope) error { calls.Add(1); return nil })
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	switch m {
	case onRouter:
		// Refused as it mounts, before the router runs.
		r, rerr := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, watermill.NopLogger{})
		require.NoError(t, rerr)
		err = p.AddHandlers(r)
		require.ErrorIs(t, err, feed.ErrPartitionKeyChanged)
		require.NoError(t, r.Close())
	default:
		err = p.Run(ctx)
		require.ErrorIs(t, err, feed.ErrPartitionKeyChanged)
	}
	require.ErrorContains(t, err, "new Name", "the error says what to do")
	require.NoError(t, p.Close())
	require.Zero(t, calls.Load(), "nothing was handled")
	after, err := p.Position(t.Context())
	require.NoError(t, err)
	require.Equal(t, before, after, "no checkpoint moved")
	requireAppliedOnce(t, src, name, envs)
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("the refusal took the whole wait")
	}
}

// testProcessorKeylessRecordLearnsTheKey: a processor record written
// before records kept the partition key takes the key of the next start,
// so a change of key after that is refused as well.
func testProcessorKeylessRecordLearnsTheKey(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("keyless")
	envs := appendCorrelated(t, s, name, 4, 3, 8)
	require.NoError(t, src.Rows().Put(t.Context(), feed.RuntimeNamespace, feed.ProcessorsTable, name, json.RawMessage(`{"partitions": 2}`), events.Token{}))
	first := startProcessor(t, m, src, procConfig(name, 2), func(ctx context.Context, env events.Envelope) error { return applyOnce(ctx, name, env) })
	awaitPosition(t, first.p, envs[len(envs)-1].Token)
	first.stop()

	cfg := procConfig(name, 2)
	cfg.PartitionKey = feed.ByCorrelation
	p, err := feed.NewProcessor(src, cfg, func(context.Context, events.Envelope) error { return nil })
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), waitTimeout)
	defer cancel()
	require.ErrorIs(t, p.Run(ctx), feed.ErrPartitionKeyChanged)
}

// testProcessorKeyAndCountChangeHandlesOnce: changing the partition key
// together with the count is the way to change it: one of two partitions
// split by stream halts mid-feed, then three partitions split by
// correlation take over, skipping what the old partitions had handled by
// the old key, so every event is applied once.
func testProcessorKeyAndCountChangeHandlesOnce(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("rekeycount")
	three := procConfig(name, 3)
	three.PartitionKey = feed.ByCorrelation
	haltSplitThenRepartition(t, m, s, src, name, func(prefix string) []events.Envelope { return appendCorrelated(t, s, prefix, 8, 5, 24) }, three)
}
