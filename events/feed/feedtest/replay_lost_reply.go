package feedtest

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// lostReplySource wraps a Source so that the commit of the unit moving a
// checkpoint to target reaches the store but its caller is told it
// failed, as when PostgreSQL committed and the connection broke before
// the reply arrived (the case feed.Move.From exists for).
type lostReplySource struct {
	feed.Source
	target  atomic.Pointer[events.Token]
	onFired func()
	fired   atomic.Bool
}

func (s *lostReplySource) Checkpoints() feed.CheckpointStore {
	return lostReplyCheckpoints{s.Source.Checkpoints(), s}
}

type lostReplyCheckpoints struct {
	feed.CheckpointStore
	s *lostReplySource
}

func (c lostReplyCheckpoints) Begin(ctx context.Context) (feed.Unit, error) {
	u, err := c.CheckpointStore.Begin(ctx)
	if err != nil {
		return nil, err
	}
	return lostReplyUnit{u, c.s}, nil
}

type lostReplyUnit struct {
	feed.Unit
	s *lostReplySource
}

func (u lostReplyUnit) Commit(ctx context.Context, moves ...feed.Move) error {
	err := u.Unit.Commit(ctx, moves...)
	tgt := u.s.target.Load()
	if err == nil && tgt != nil && len(moves) == 1 && moves[0].Position == *tgt && u.s.fired.CompareAndSwap(false, true) {
		u.s.onFired()
		return errors.New("feedtest: connection reset (the commit reached the store; its reply was lost)")
	}
	return err
}

// testReplayAfterLostCommitReply: a consumer whose commit's reply was lost
// holds a stale position, and the events of that commit must not be
// applied again (Move.From). A dead-letter replay requested just then runs
// on the delivery goroutine at that stale position: its unit must commit
// only over it too, or it moves the checkpoint back and the committed
// event is applied a second time. Without a replay request the same lost
// reply is the control.
func testReplayAfterLostCommitReply(t *testing.T, s events.Store, src feed.Source) {
	for _, replay := range []bool{true, false} {
		lostReplyRun(t, s, src, replay)
	}
}

func lostReplyRun(t *testing.T, s events.Store, src feed.Source, replay bool) {
	ctx := t.Context()
	name := uniqueName("lostreply")
	quiet := slog.New(slog.DiscardHandler)
	var broken atomic.Bool
	broken.Store(true)
	badRes, err := s.Append(ctx, uniqueName("bad"), events.AnyVersion, thing(0))
	require.NoError(t, err)
	badID := badRes.EventIDs[0]

	ls := &lostReplySource{Source: src}
	ls.onFired = func() {
		if !replay {
			return
		}
		// Just after the lost reply, an operator asks for the replay.
		if _, err := feed.RequestReplay(context.WithoutCancel(ctx), src.Rows(), name+"/"+badID); err != nil {
			t.Errorf("request replay: %v", err)
		}
	}
	goodStream := uniqueName("good")
	p, err := feed.NewProcessor(ls, &feed.ProcessorConfig{
		Name: name, MaxAttempts: 1, OnFailure: feed.DeadLetter, ReplayCheckInterval: 5 * time.Millisecond,
		Subscriber: feed.SubscriberConfig{LeaseTTL: 2 * time.Second, NackBackoffMin: 300 * time.Millisecond, NackBackoffMax: 300 * time.Millisecond, Logger: quiet},
		Logger:     quiet,
	}, func(ctx context.Context, env events.Envelope) error {
		if env.StreamID == goodStream {
			tok := env.Token
			ls.target.Store(&tok)
		}
		if env.ID == badID && broken.Load() {
			return errors.New("cannot apply " + env.ID)
		}
		return countApplied(ctx, name, env)
	})
	require.NoError(t, err)
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- p.Run(rctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()

	require.Eventually(t, func() bool {
		dls, err := p.DeadLetters(ctx, 0)
		return err == nil && len(dls) == 1
	}, waitTimeout, 5*time.Millisecond, "the bad event was never dead-lettered")
	broken.Store(false)
	goodRes, err := s.Append(ctx, goodStream, events.AnyVersion, thing(1))
	require.NoError(t, err)
	good := goodRes.EventIDs[0]
	require.Eventually(t, ls.fired.Load, waitTimeout, time.Millisecond, "the lost reply never happened")
	// The replay's unit deletes the dead letter and commits the checkpoint
	// at once: once it is gone and the checkpoint is past good again, a
	// second application of good has committed too, if there is one.
	require.Eventually(t, func() bool {
		dls, err := p.DeadLetters(ctx, 0)
		if err != nil || (replay && len(dls) != 0) {
			return false
		}
		pos, err := p.Position(ctx)
		return err == nil && !pos.Before(goodRes.Token)
	}, waitTimeout, 5*time.Millisecond, "the replay never ran, or the processor never got back past the good event")
	row, ok, err := src.Rows().Get(ctx, name, "applied", good, feed.LockNone)
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, "1", string(row.Value), "replay %v: event %s, whose commit reached the store, was applied %s times", replay, good, row.Value)
}

// countApplied counts env's applications in a row of the delivery's unit.
func countApplied(ctx context.Context, ns string, env events.Envelope) error {
	eu, ok := events.UnitFromContext(ctx)
	if !ok {
		return errors.New("feedtest: the delivery carries no unit")
	}
	fu, ok := eu.(feed.Unit)
	if !ok {
		return errors.New("feedtest: the delivery's unit is no feed.Unit")
	}
	rows := fu.Rows()
	row, found, err := rows.Get(ctx, ns, "applied", env.ID, feed.LockUpdate)
	if err != nil {
		return err
	}
	n := 0
	if found {
		if err := json.Unmarshal(row.Value, &n); err != nil {
			return err
		}
	}
	return rows.Put(ctx, ns, "applied", env.ID, json.RawMessage(strconv.Itoa(n+1)), env.Token)
}
