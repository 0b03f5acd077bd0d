package feedtest

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// recordReadFailures is a source whose rows fail the read of processor
// records while fail is above zero, each failure counting it down, as a
// database that does not answer while a process starts; failed counts
// the failures. Its checkpoints fail the read of
// the position named failPositionOf likewise, while failPosition is
// above zero.
type recordReadFailures struct {
	feed.Source
	fail   atomic.Int64
	failed atomic.Int64

	failPositionOf string
	failPosition   atomic.Int64
}

func (s *recordReadFailures) Rows() feed.Rows { return recordReadRows{s.Source.Rows(), s} }

func (s *recordReadFailures) Checkpoints() feed.CheckpointStore {
	return positionReadFailures{s.Source.Checkpoints(), s}
}

type positionReadFailures struct {
	feed.CheckpointStore
	s *recordReadFailures
}

func (c positionReadFailures) Position(ctx context.Context, name string) (events.Token, error) {
	if name == c.s.failPositionOf && c.s.failPosition.Add(-1) >= 0 {
		c.s.failed.Add(1)
		return events.Token{}, errors.New("feedtest: checkpoints unreachable (injected)")
	}
	return c.CheckpointStore.Position(ctx, name)
}

type recordReadRows struct {
	feed.Rows
	s *recordReadFailures
}

func (r recordReadRows) Get(ctx context.Context, ns, table, key string, lock feed.Lock) (feed.Row, bool, error) {
	if ns == feed.RuntimeNamespace && table == feed.ProcessorsTable && r.s.fail.Add(-1) >= 0 {
		r.s.failed.Add(1)
		return feed.Row{}, false, errors.New("feedtest: rows unreachable (injected)")
	}
	return r.Rows.Get(ctx, ns, table, key, lock)
}

// testProcessorRepartitionWaitsForItsRecord: a processor restarted with
// more partitions while its record cannot be read does not start them at
// the beginning of the feed: they wait until the record is read, then
// start at the old position, so nothing applied before is delivered
// again.
func testProcessorRepartitionWaitsForItsRecord(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("repartwait")
	first, h := runUnsplit(t, m, s, src, name)
	flaky := &recordReadFailures{Source: src}
	// The start's reads (AddHandlers' check, the seed) and the first of
	// the partitions' retries fail.
	flaky.fail.Store(3)
	cfg := procConfig(name, 4)
	cfg.Subscriber.PendingBackoffMin = time.Millisecond
	requireNothingAgain(t, m, s, flaky, cfg, first, h)
	require.EqualValues(t, 3, flaky.failed.Load(), "every injected failure was met")
}

// testProcessorKeyChangeRefusedOnceReadable: a processor whose key changed
// at the same count, started while its record cannot be read, delivers
// nothing: its partitions wait for the record, then refuse, and say why
// in their status (Run returns the refusal).
func testProcessorKeyChangeRefusedOnceReadable(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("rekeywait")
	envs := appendCorrelated(t, s, name, 6, 5, 30)
	first := startProcessor(t, m, src, procConfig(name, 3), func(ctx context.Context, env events.Envelope) error { return applyOnce(ctx, name, env) })
	awaitPosition(t, first.p, envs[len(envs)-1].Token)
	first.stop()
	before, err := first.p.Position(t.Context())
	require.NoError(t, err)

	flaky := &recordReadFailures{Source: src}
	flaky.fail.Store(2) // AddHandlers' check (on a router) and the start's seed
	cfg := procConfig(name, 3)
	cfg.PartitionKey = feed.ByCorrelation
	cfg.Subscriber.PendingBackoffMin = time.Millisecond
	var calls atomic.Int32
	p := startProcessor(t, m, flaky, cfg, func(context.Context, events.Envelope) error { calls.Add(1); return nil })
	appendCorrelated(t, s, name+"x", 3, 2, 6) // something to deliver
	require.Eventually(t, func() bool {
		for _, ps := range p.p.Status().Partitions {
			if !strings.Contains(ps.LastError, "PartitionKey changed") {
				return false
			}
		}
		return true
	}, waitTimeout, time.Millisecond, "every partition reports the refusal")
	if m == direct {
		p.awaitDone()
		require.ErrorIs(t, p.runErr, feed.ErrPartitionKeyChanged)
	}
	p.stop()
	require.Zero(t, calls.Load(), "nothing was handled")
	after, err := p.p.Position(t.Context())
	require.NoError(t, err)
	require.Equal(t, before, after, "no checkpoint moved")
	requireAppliedOnce(t, src, name, envs)
}

// testProcessorUnsplitWithoutRecordWaitsForItsPosition: a processor that
// ran unsplit before processor records were kept (its record is missing)
// is restarted with more partitions while its old checkpoint cannot be
// read: the partitions wait for it, then start at its position, instead
// of taking the failed read for "never ran" and starting at the
// beginning of the feed.
func testProcessorUnsplitWithoutRecordWaitsForItsPosition(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("norecord")
	first, h := runUnsplit(t, m, s, src, name)
	require.NoError(t, src.Rows().Delete(t.Context(), feed.RuntimeNamespace, feed.ProcessorsTable, name))

	flaky := &recordReadFailures{Source: src, failPositionOf: name}
	flaky.failPosition.Store(2) // the start's seed and the first retry
	cfg := procConfig(name, 4)
	cfg.Subscriber.PendingBackoffMin = time.Millisecond
	requireNothingAgain(t, m, s, flaky, cfg, first, h)
	require.EqualValues(t, 2, flaky.failed.Load(), "every injected failure was met")
}
