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
	d := startDeadLettering(t, m, s, flaky, name, nil)
	p, envs := d.p, d.envs

	flaky.fail.Store(1 << 30)
	_, err := feed.RequestReplay(ctx, src.Rows(), d.key)
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
	_, ok, err := feed.ReadReplay(ctx, src.Rows(), d.key)
	require.NoError(t, err)
	require.False(t, ok, "the request is removed with the dead letter")
	requireAppliedOnce(t, src, name, envs)
}

// testProcessorReplaySurvivesFailedGates: a replay whose gate cannot tell
// (its read fails, as when the store does not answer for a moment) is not
// marked failed, as a handler's failure would mark it: the gate says
// nothing of the event. It is tried again, and applied once the gate
// answers.
func testProcessorReplaySurvivesFailedGates(t *testing.T, m mode, s events.Store, src feed.Source) {
	ctx := t.Context()
	name := uniqueName("replaygate")
	var gateFails, gateFailed atomic.Int64
	d := startDeadLettering(t, m, s, src, name, func(cfg *feed.ProcessorConfig, bad events.Envelope) {
		cfg.Gate = func(_ context.Context, env events.Envelope) ([]string, events.Token, error) {
			if env.ID == bad.ID && gateFails.Add(-1) >= 0 {
				gateFailed.Add(1)
				return nil, events.Token{}, errors.New("feedtest: instance unreadable (injected)")
			}
			return nil, events.Token{}, nil
		}
		cfg.Waiter = &fakeWaiter{released: make(chan struct{})}
	})
	p, envs, key := d.p, d.envs, d.key

	gateFails.Store(3)
	_, err := feed.RequestReplay(ctx, src.Rows(), key)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		dls, err := p.p.DeadLetters(ctx, 0)
		return err == nil && len(dls) == 0
	}, waitTimeout, 5*time.Millisecond, "the replay is tried again until its gate answers")
	require.EqualValues(t, 3, gateFailed.Load())
	_, ok, err := feed.ReadReplay(ctx, src.Rows(), key)
	require.NoError(t, err)
	require.False(t, ok, "the request is removed with the dead letter, not kept as failed")
	requireAppliedOnce(t, src, name, envs)
}

// deadLettered is a processor that dead-lettered one of its events: the
// second of envs, whose replay key is key.
type deadLettered struct {
	p    *procRun
	envs []events.Envelope
	key  string
}

// startDeadLettering appends four events under name and runs a processor
// of one partition on src (one attempt each, dead letters, replay checks
// every 10ms; tune, when set, changes its config further) whose handler
// fails on the second event, until that event is dead-lettered; then the
// handler works again.
func startDeadLettering(t *testing.T, m mode, s events.Store, src feed.Source, name string, tune func(*feed.ProcessorConfig, events.Envelope)) deadLettered {
	t.Helper()
	cfg := procConfig(name, 1)
	cfg.Categories = []string{name}
	cfg.MaxAttempts = 1
	cfg.OnFailure = feed.DeadLetter
	cfg.ReplayCheckInterval = 10 * time.Millisecond
	envs := appendSpread(t, s, name, 2, 4)
	bad := envs[1]
	if tune != nil {
		tune(cfg, bad)
	}
	var broken atomic.Bool
	broken.Store(true)
	p := startProcessor(t, m, src, cfg, failingOn(name, bad, &broken))
	awaitPosition(t, p.p, envs[3].Token)
	dls, err := p.p.DeadLetters(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	broken.Store(false)
	return deadLettered{p: p, envs: envs, key: dls[0].Checkpoint + "/" + bad.ID}
}
