package feedtest

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// replayListFailures is a source whose rows fail the listing of replay
// requests while fail is above zero, each failure counting it down, as a
// database that stops answering for a moment; failed counts them.
type replayListFailures struct {
	feed.Source
	fail   atomic.Int64
	failed atomic.Int64
}

func (s *replayListFailures) Rows() feed.Rows { return replayListRows{s.Source.Rows(), s} }

type replayListRows struct {
	feed.Rows
	s *replayListFailures
}

func (r replayListRows) List(ctx context.Context, ns, table string, q feed.RowQuery) ([]feed.Row, error) {
	if ns == feed.RuntimeNamespace && table == feed.ReplaysTable && r.s.fail.Add(-1) >= 0 {
		r.s.failed.Add(1)
		return nil, errors.New("feedtest: rows unreachable (injected)")
	}
	return r.Rows.List(ctx, ns, table, q)
}

// testProcessorReplaySurvivesFailedSweeps: a replay request made while the
// requests cannot be listed is not lost: the partition keeps delivering
// meanwhile, and once listing works again a sweep applies the dead letter
// once and removes it and the request.
func testProcessorReplaySurvivesFailedSweeps(t *testing.T, m mode, s events.Store, src feed.Source) {
	ctx := t.Context()
	flaky := &replayListFailures{Source: src}
	name := uniqueName("replayretry")
	cfg := procConfig(name, 1)
	cfg.Categories = []string{name}
	cfg.MaxAttempts = 1
	cfg.OnFailure = feed.DeadLetter
	cfg.ReplayCheckInterval = 10 * time.Millisecond
	envs := appendSpread(t, s, name, 2, 4)
	bad := envs[1]
	var broken atomic.Bool
	broken.Store(true)
	p := startProcessor(t, m, flaky, cfg, failingOn(name, bad, &broken))
	awaitPosition(t, p.p, envs[3].Token)
	dls, err := p.p.DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)

	broken.Store(false)
	flaky.fail.Store(1 << 30)
	_, err = feed.RequestReplay(ctx, src.Rows(), dls[0].Checkpoint+"/"+bad.ID)
	require.NoError(t, err)
	// While the sweeps fail, delivery goes on.
	more := appendSpread(t, s, name+"more", 1, 2)
	awaitPosition(t, p.p, more[1].Token)
	require.Eventually(t, func() bool { return flaky.failed.Load() >= 3 }, waitTimeout, time.Millisecond)
	dls2, err := p.p.DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Len(t, dls2, 1, "not replayed while the requests cannot be listed")

	flaky.fail.Store(0)
	require.Eventually(t, func() bool {
		dls, err := p.p.DeadLetters(ctx, 0)
		return err == nil && len(dls) == 0
	}, waitTimeout, 5*time.Millisecond, "a later sweep replays the dead letter")
	_, ok, err := feed.ReadReplay(ctx, src.Rows(), dls[0].Checkpoint+"/"+bad.ID)
	require.NoError(t, err)
	require.False(t, ok, "the request is removed with the dead letter")
	requireAppliedOnce(t, src, name, envs)
}
