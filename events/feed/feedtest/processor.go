package feedtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// processorTests are the behaviours of feed.Processor, the consumer
// runtime, over every Source, each run with the processors on routers and
// again with them delivering straight to the handler (see mode).
var processorTests = []processorTest{
	{"ProcessorSplitsPartitionsBetweenProcesses", testProcessorSplits},
	{"ProcessorSameOwnerTwoProcesses", testProcessorSameOwner},
	{"ProcessorDeadMemberPartitionsMove", testProcessorDeadMember},
	{"ProcessorThirdMemberTakesShare", testProcessorJoin},
	{"ProcessorPartitionsGoToWhoHandlesEverything", testProcessorHandles},
	{"ProcessorHaltsThenResumes", testProcessorHalt},
	{"ProcessorDeadLetters", testProcessorDeadLetter},
	{"ProcessorReplaysDeadLetterOnRequest", testProcessorReplay},
	{"ProcessorGateWaitsBeforeUnit", testProcessorGate},
	{"ProcessorFailureBehindHeadCutsUnit", testProcessorCut},
	{"ProcessorFiltersTypes", testProcessorFilter},
	{"ProcessorPartitionCountChangeKeepsPosition", testProcessorRepartition},
	{"ProcessorPartitionCountChangeFromSplitHandlesOnce", testProcessorRepartitionFromSplit},
	{"ProcessorPartitionCountChangesInARowHandleOnce", testProcessorCountChangesInARow},
	{"ProcessorPartitionKeyChangeRefused", testProcessorKeyChangeRefused},
	{"ProcessorPartitionCountChangeSkipsCarried", testProcessorSkipsCarried},
	{"ProcessorKeylessRecordLearnsTheKey", testProcessorKeylessRecordLearnsTheKey},
	{"ProcessorUnitEvents", testProcessorUnitEvents},
	{"ProcessorPartitionKeyAndCountChangeHandlesOnce", testProcessorKeyAndCountChangeHandlesOnce},
	{"ProcessorPartitionCountChangeWaitsForItsRecord", testProcessorRepartitionWaitsForItsRecord},
	{"ProcessorPartitionKeyChangeRefusedOnceReadable", testProcessorKeyChangeRefusedOnceReadable},
	{"ProcessorInterruptedHandlerIsNoFailure", testProcessorInterruptedHandlerIsNoFailure},
	{"ProcessorInterruptedGateRunsNothing", testProcessorInterruptedGateRunsNothing},
	{"ProcessorDeadlineIsAFailure", testProcessorDeadlineIsAFailure},
	{"ProcessorReplaySurvivesFailedGates", testProcessorReplaySurvivesFailedGates},
	{"ProcessorUnsplitWithoutRecordWaitsForItsPosition", testProcessorUnsplitWithoutRecordWaitsForItsPosition},
	{"ProcessorReplayFencedByTheLease", testProcessorReplayFenced},
	{"ProcessorReplaySurvivesFailedSweeps", testProcessorReplaySurvivesFailedSweeps},
	{"ProcessorReplayAfterRepartition", testProcessorReplayAfterRepartition},
	{"ProcessorFailureAtStopRollsBackUnit", testProcessorFailureAtStop},
	{"ProcessorPanicIsAFailure", testProcessorPanic},
	{"ProcessorReadAheadKeepsOrderAndEffects", testProcessorReadAhead},
	{"ProcessorErrCutBehindHeadIsNoFailure", testProcessorErrCut},
	{"ProcessorDeadLettersOfItsOwn", testProcessorDeadLettersOfItsOwn},
	{"ProcessorPauseFreesLeasesKeepsSubscriptions", testProcessorPause},
	{"ProcessorPauseKeepsLeaseUnderHandler", testProcessorPauseKeepsLeaseUnderHandler},
	{"ProcessorRetryMiddlewareAppliesOnce", testProcessorRetryMiddleware},
	{"ProcessorAckingMiddlewareKeepsTheUnitGoing", testProcessorAckingMiddleware},
	{"ProcessorAwaitTakeoverAfterAFailedRead", testProcessorAwaitTakeoverAfterAFailedRead},
}

// applied counts, in the store's rows and through each event's unit, how
// many times every event was applied: exactly-once effects show as 1.
const appliedTable = "applied"

// failingOn returns a handler that fails on bad while broken is set and
// applies every other event once (applyOnce under ns).
func failingOn(ns string, bad events.Envelope, broken *atomic.Bool) feed.Handler {
	return func(ctx context.Context, env events.Envelope) error {
		if env.ID == bad.ID && broken.Load() {
			return errors.New("cannot apply " + env.ID)
		}
		return applyOnce(ctx, ns, env)
	}
}

func applyOnce(ctx context.Context, ns string, env events.Envelope) error {
	u, ok := events.UnitFromContext(ctx)
	if !ok {
		return errors.New("no unit in the handler context")
	}
	fu, ok := u.(feed.Unit)
	if !ok {
		return fmt.Errorf("the handler's unit is a %T, not a feed.Unit", u)
	}
	rows := fu.Rows()
	row, found, err := rows.Get(ctx, ns, appliedTable, env.ID, feed.LockUpdate)
	if err != nil {
		return err
	}
	n := 0
	if found {
		if err := json.Unmarshal(row.Value, &n); err != nil {
			return err
		}
	}
	return rows.Put(ctx, ns, appliedTable, env.ID, json.RawMessage(strconv.Itoa(n+1)), env.Token)
}

// requireAppliedOnce checks every event of envs was applied exactly once.
func requireAppliedOnce(t *testing.T, src feed.Source, ns string, envs []events.Envelope) {
	t.Helper()
	rows, err := src.Rows().List(t.Context(), ns, appliedTable, feed.RowQuery{Limit: len(envs) + 10})
	require.NoError(t, err)
	got := map[string]string{}
	for _, r := range rows {
		got[r.Key] = string(r.Value)
	}
	for _, e := range envs {
		require.Equal(t, "1", got[e.ID], "event %s (%s v%d) applied %s times", e.ID, e.StreamID, e.Version, got[e.ID])
	}
	require.Len(t, got, len(envs))
}

func procConfig(name string, partitions int) *feed.ProcessorConfig {
	return &feed.ProcessorConfig{
		Name:       name,
		Partitions: partitions,
		Subscriber: feed.SubscriberConfig{
			LeaseTTL:       time.Second,
			NackBackoffMin: time.Millisecond,
			NackBackoffMax: 5 * time.Millisecond,
			Logger:         quietLogger,
		},
		Logger: quietLogger,
	}
}

// appendSpread appends n events round-robin over streams streams and
// returns them as stored.
func appendSpread(t *testing.T, s events.Store, prefix string, streams, n int) []events.Envelope {
	t.Helper()
	for i := range n {
		appendTo(t, s, fmt.Sprintf("%s-%d", prefix, i%streams), i)
	}
	return awaitAllOf(t, s, prefix, n)
}

// awaitAllOf waits until the store shows n events of streams starting with
// prefix and returns them.
func awaitAllOf(t *testing.T, s events.Store, prefix string, n int) []events.Envelope {
	t.Helper()
	var got []events.Envelope
	require.Eventually(t, func() bool {
		all, err := s.ReadAll(context.WithoutCancel(t.Context()), events.Token{}, 100000)
		if err != nil {
			return false
		}
		got = got[:0]
		for _, e := range all {
			if feed.InCategory(e.StreamID, prefix) || len(e.StreamID) > len(prefix) && e.StreamID[:len(prefix)+1] == prefix+"-" {
				got = append(got, e)
			}
		}
		return len(got) >= n
	}, waitTimeout, 5*time.Millisecond)
	return got
}

// awaitPosition waits until the processor's position reaches tok.
func awaitPosition(t *testing.T, p *feed.Processor, tok events.Token) {
	t.Helper()
	require.Eventually(t, func() bool {
		pos, err := p.Position(context.WithoutCancel(t.Context()))
		return err == nil && !pos.Before(tok)
	}, waitTimeout, 5*time.Millisecond, "processor %s never reached %s", p.Name(), tok)
}

// orderChecker fails the test when a stream's events arrive out of order.
type orderChecker struct {
	mu   sync.Mutex
	last map[string]int64
	bad  []string
}

func (o *orderChecker) see(env events.Envelope) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.last == nil {
		o.last = map[string]int64{}
	}
	// A redelivery after a rollback may repeat a version, never skip back
	// past a committed one: versions only grow by at most one.
	if prev, ok := o.last[env.StreamID]; ok && env.Version > prev+1 {
		o.bad = append(o.bad, fmt.Sprintf("%s: v%d after v%d", env.StreamID, env.Version, prev))
	}
	o.last[env.StreamID] = env.Version
}

func testProcessorSplits(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("split")
	var byA, byB atomic.Int64
	var order orderChecker
	handler := func(count *atomic.Int64) feed.Handler {
		return func(ctx context.Context, env events.Envelope) error {
			order.see(env)
			count.Add(1)
			return applyOnce(ctx, name, env)
		}
	}
	a := startProcessor(t, m, src, procConfig(name, 4), handler(&byA))
	b := startProcessor(t, m, src, procConfig(name, 4), handler(&byB))
	require.Eventually(t, func() bool {
		return len(a.p.Status().Members) == 2 && len(b.p.Status().Members) == 2 && a.active()+b.active() == 4 && a.active() > 0 && b.active() > 0
	}, waitTimeout, 5*time.Millisecond, "the two processes never split the partitions")

	envs := appendSpread(t, s, name, 16, 160)
	awaitPosition(t, a.p, envs[len(envs)-1].Token)
	requireAppliedOnce(t, src, name, envs)
	require.Positive(t, byA.Load(), "process A handled nothing: the work was not split")
	require.Positive(t, byB.Load(), "process B handled nothing: the work was not split")
	require.Empty(t, order.bad)
}

// killableSource fails every call once killed, as a process cut off from
// the database does: it can neither renew nor leave.
type killableSource struct {
	feed.Source
	dead atomic.Bool
	cps  *killableCheckpoints
}

type killableCheckpoints struct {
	feed.CheckpointStore
	dead *atomic.Bool
}

var errKilled = errors.New("feedtest: process killed")

func newKillable(src feed.Source) *killableSource {
	k := &killableSource{Source: src}
	k.cps = &killableCheckpoints{CheckpointStore: src.Checkpoints(), dead: &k.dead}
	return k
}

func (k *killableSource) Checkpoints() feed.CheckpointStore { return k.cps }

func (k *killableSource) ReadFeed(ctx context.Context, after events.Token, f feed.Filter, limit int) (feed.Batch, error) {
	if k.dead.Load() {
		return feed.Batch{}, errKilled
	}
	return k.Source.ReadFeed(ctx, after, f, limit)
}

func (c *killableCheckpoints) Renew(ctx context.Context, l feed.Lease, ttl time.Duration) error {
	if c.dead.Load() {
		return errKilled
	}
	return c.CheckpointStore.Renew(ctx, l, ttl)
}

func (c *killableCheckpoints) Acquire(ctx context.Context, name, owner string, ttl time.Duration) (feed.Lease, error) {
	if c.dead.Load() {
		return feed.Lease{}, errKilled
	}
	return c.CheckpointStore.Acquire(ctx, name, owner, ttl)
}

func (c *killableCheckpoints) Begin(ctx context.Context) (feed.Unit, error) {
	if c.dead.Load() {
		return nil, errKilled
	}
	return c.CheckpointStore.Begin(ctx)
}

func (c *killableCheckpoints) Heartbeat(ctx context.Context, group, member string, ttl time.Duration) ([]string, error) {
	if c.dead.Load() {
		return nil, errKilled
	}
	return c.CheckpointStore.Heartbeat(ctx, group, member, ttl)
}

func (c *killableCheckpoints) Leave(ctx context.Context, group, member string) error {
	if c.dead.Load() {
		return errKilled
	}
	return c.CheckpointStore.Leave(ctx, group, member)
}

func testProcessorDeadMember(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("dead")
	ks := newKillable(src)
	h := func(ctx context.Context, env events.Envelope) error { return applyOnce(ctx, name, env) }
	a := startProcessor(t, m, ks, procConfig(name, 4), h)
	b := startProcessor(t, m, src, procConfig(name, 4), h)
	require.Eventually(t, func() bool { return a.active() > 0 && b.active() > 0 && a.active()+b.active() == 4 },
		waitTimeout, 5*time.Millisecond)
	first := appendSpread(t, s, name, 8, 40)
	awaitPosition(t, b.p, first[len(first)-1].Token)

	ks.dead.Store(true) // A is cut off: no renewals, no leave
	rest := appendSpread(t, s, name+"x", 8, 40)
	// B reaches the end of the events spread over every partition, A's
	// included, and takes all of A's partitions (A's membership and its
	// leases each expire one TTL after its last renewal).
	awaitPosition(t, b.p, rest[len(rest)-1].Token)
	require.Eventually(t, func() bool { return b.active() == 4 }, waitTimeout, 5*time.Millisecond,
		"B never took A's partitions")
	requireAppliedOnce(t, src, name, append(first, rest...))
}

func testProcessorJoin(t *testing.T, m mode, _ events.Store, src feed.Source) {
	name := uniqueName("join")
	h := func(context.Context, events.Envelope) error { return nil }
	a := startProcessor(t, m, src, procConfig(name, 6), h)
	b := startProcessor(t, m, src, procConfig(name, 6), h)
	require.Eventually(t, func() bool { return a.active() == 3 && b.active() == 3 }, waitTimeout, 5*time.Millisecond)
	c := startProcessor(t, m, src, procConfig(name, 6), h)
	require.Eventually(t, func() bool { return a.active() == 2 && b.active() == 2 && c.active() == 2 },
		waitTimeout, 5*time.Millisecond, "the third process never got its share: a=%d b=%d c=%d", a.active(), b.active(), c.active())
	c.stop()
	require.Eventually(t, func() bool { return a.active() == 3 && b.active() == 3 }, waitTimeout, 5*time.Millisecond,
		"a leaving process's partitions were not taken over")
}

func testProcessorHalt(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("halt")
	var broken atomic.Bool
	broken.Store(true)
	var calls atomic.Int64
	cfg := procConfig(name, 1)
	cfg.MaxAttempts = 3
	cfg.HaltCheckInterval = 10 * time.Millisecond
	envs := appendSpread(t, s, name, 1, 3)
	bad := envs[1]
	p := startProcessor(t, m, src, cfg, func(ctx context.Context, env events.Envelope) error {
		if env.ID == bad.ID {
			calls.Add(1)
			if broken.Load() {
				return errors.New("boom")
			}
		}
		return applyOnce(ctx, name, env)
	})
	requireHaltedAt(t, p.p, bad, "boom", 3, envs[0].Token)
	// Three failures at the head of a unit, plus at most one behind the
	// head of the first unit (not counted: the unit is cut before it).
	require.LessOrEqual(t, calls.Load(), int64(4), "a halted event must not be retried past MaxAttempts")
	broken.Store(false)
	resumeAndRequireAll(t, p.p, src, name, envs)
}

// requireHaltedAt waits for p's only partition to halt on bad after
// attempts failures whose reason contains reason, with the checkpoint left
// at before.
func requireHaltedAt(t *testing.T, p *feed.Processor, bad events.Envelope, reason string, attempts int, before events.Token) {
	t.Helper()
	require.Eventually(t, func() bool {
		st := p.Status().Partitions[0]
		return st.State == feed.PartitionHalted && st.Halt != nil
	}, waitTimeout, 5*time.Millisecond)
	st := p.Status().Partitions[0]
	require.Equal(t, bad.ID, st.Halt.EventID)
	require.Contains(t, st.Halt.Reason, reason)
	require.Equal(t, attempts, st.Halt.Attempts)
	pos, err := p.Position(t.Context())
	require.NoError(t, err)
	require.Equal(t, before, pos, "the checkpoint must stop before the failing event")
}

// resumeAndRequireAll resumes p's one halted partition and waits until
// every event of envs is applied once.
func resumeAndRequireAll(t *testing.T, p *feed.Processor, src feed.Source, ns string, envs []events.Envelope) {
	t.Helper()
	n, err := p.Resume(t.Context())
	require.NoError(t, err)
	require.Equal(t, 1, n)
	awaitPosition(t, p, envs[len(envs)-1].Token)
	requireAppliedOnce(t, src, ns, envs)
}

func testProcessorDeadLetter(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("dlq")
	cfg := procConfig(name, 1)
	cfg.MaxAttempts = 2
	cfg.OnFailure = feed.DeadLetter
	envs := appendSpread(t, s, name, 2, 4)
	bad := envs[2]
	p := startProcessor(t, m, src, cfg, func(ctx context.Context, env events.Envelope) error {
		if err := applyOnce(ctx, name, env); err != nil {
			return err
		}
		if env.ID == bad.ID {
			return errors.New("cannot apply " + env.ID)
		}
		return nil
	})
	awaitPosition(t, p.p, envs[3].Token)
	dls, err := p.p.DeadLetters(t.Context(), 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	require.Equal(t, bad.ID, dls[0].Event.ID)
	require.Equal(t, 2, dls[0].Attempts)
	require.Contains(t, dls[0].Reason, "cannot apply")
	// The failed attempts' writes were rolled back with their units.
	requireAppliedOnce(t, src, name, []events.Envelope{envs[0], envs[1], envs[3]})
}

// fakeWaiter reaches its models once released.
type fakeWaiter struct {
	released chan struct{}
	waits    atomic.Int64
}

func (w *fakeWaiter) WaitReached(ctx context.Context, _ events.Token, models ...string) (bool, []string, error) {
	w.waits.Add(1)
	select {
	case <-w.released:
		return true, nil, nil
	case <-ctx.Done():
		return false, models, nil
	}
}

func testProcessorGate(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("gate")
	w := &fakeWaiter{released: make(chan struct{})}
	cfg := procConfig(name, 1)
	cfg.CommitBatch = 10
	cfg.GateTimeout = 20 * time.Millisecond
	envs := appendSpread(t, s, name, 1, 4)
	gated := envs[2]
	cfg.Gate = func(_ context.Context, env events.Envelope) ([]string, events.Token, error) {
		if env.ID == gated.ID {
			return []string{"model"}, env.Token, nil
		}
		return nil, events.Token{}, nil
	}
	cfg.Waiter = w
	type seen struct {
		gate  feed.GateResult
		index int
		unit  bool
	}
	var mu sync.Mutex
	var got []seen
	p := startProcessor(t, m, src, cfg, func(ctx context.Context, env events.Envelope) error {
		if env.ID == gated.ID {
			_, inUnit := events.UnitFromContext(ctx)
			mu.Lock()
			got = append(got, seen{gate: feed.GateFromContext(ctx), index: feed.UnitIndex(ctx), unit: inUnit})
			n := len(got)
			mu.Unlock()
			if n == 1 {
				close(w.released)
				return errors.New("models were behind; try again")
			}
		}
		return applyOnce(ctx, name, env)
	})
	awaitPosition(t, p.p, envs[3].Token)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, got, 2)
	// The gated event was cut to the head of its own unit before waiting,
	// so the wait held no other event's writes open.
	require.Equal(t, 0, got[0].index)
	require.True(t, got[0].unit)
	require.True(t, got[0].gate.Gated)
	require.False(t, got[0].gate.Reached)
	require.Equal(t, []string{"model"}, got[0].gate.Behind)
	require.GreaterOrEqual(t, got[0].gate.Waited, cfg.GateTimeout)
	require.True(t, got[1].gate.Reached)
	requireAppliedOnce(t, src, name, envs)
}

func testProcessorCut(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("cut")
	cfg := procConfig(name, 1)
	cfg.CommitBatch = 10
	cfg.MaxAttempts = 2
	envs := appendSpread(t, s, name, 3, 6)
	var failedOnce atomic.Bool
	var headCalls atomic.Int64
	p := startProcessor(t, m, src, cfg, func(ctx context.Context, env events.Envelope) error {
		if err := applyOnce(ctx, name, env); err != nil {
			return err
		}
		if env.ID == envs[3].ID {
			if feed.UnitIndex(ctx) == 0 {
				headCalls.Add(1)
			}
			if failedOnce.CompareAndSwap(false, true) {
				return errors.New("transient")
			}
		}
		return nil
	})
	awaitPosition(t, p.p, envs[5].Token)
	requireAppliedOnce(t, src, name, envs)
	require.Equal(t, int64(1), headCalls.Load(), "the failing event was not redelivered at the head of a unit of its own")
	require.Equal(t, feed.PartitionActive, p.p.Status().Partitions[0].State,
		"a failure behind the head must not count toward MaxAttempts")
}

func testProcessorFilter(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("filter")
	cfg := procConfig(name, 1)
	cfg.Types = []string{"feedtest.wanted"}
	var got atomic.Int64
	p := startProcessor(t, m, src, cfg, func(ctx context.Context, env events.Envelope) error {
		if env.Type != "feedtest.wanted" {
			return fmt.Errorf("handed an event of type %s the filter excludes", env.Type)
		}
		got.Add(1)
		return applyOnce(ctx, name, env)
	})
	stream := name + "-1"
	for i := range 30 {
		typ := eventType
		if i%10 == 5 {
			typ = "feedtest.wanted"
		}
		_, err := s.Append(t.Context(), stream, events.AnyVersion,
			events.Event{Data: events.Raw{Type: typ, Payload: json.RawMessage(`{}`)}})
		require.NoError(t, err)
	}
	all := awaitAllOf(t, s, name, 30)
	// The position moves to the last event, though it is not handled: the
	// read scanned past it and the checkpoint advanced without a unit.
	awaitPosition(t, p.p, all[len(all)-1].Token)
	require.Equal(t, int64(3), got.Load())
}

// testProcessorReplay: a replay request is carried out once, by the
// process holding the partition, in a unit that applies the event and
// deletes the dead letter and the request; a failing replay leaves the
// dead letter and says why in the request.
func testProcessorReplay(t *testing.T, m mode, s events.Store, src feed.Source) {
	for _, partitions := range []int{1, 2} {
		t.Run(fmt.Sprintf("partitions=%d", partitions), func(t *testing.T) {
			testProcessorReplayIn(t, m, s, src, partitions)
		})
	}
}

func testProcessorReplayIn(t *testing.T, m mode, s events.Store, src feed.Source, partitions int) {
	ctx := t.Context()
	name := uniqueName("replay")
	cfg := procConfig(name, partitions)
	cfg.Categories = []string{name} // the store is shared with the other subtest
	cfg.MaxAttempts = 2
	cfg.OnFailure = feed.DeadLetter
	cfg.ReplayCheckInterval = 10 * time.Millisecond
	envs := appendSpread(t, s, name, 2, 4)
	bad := envs[1]
	var broken atomic.Bool
	broken.Store(true)
	h := failingOn(name, bad, &broken)
	// Two processes: only the one holding the partition replays.
	p1 := startProcessor(t, m, src, cfg, h)
	p2 := startProcessor(t, m, src, cfg, h)
	awaitPosition(t, p1.p, envs[3].Token)
	dls, err := p1.p.DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	// The key names the partition's checkpoint ("name#i/n" when split).
	key := dls[0].Checkpoint + "/" + bad.ID
	require.Equal(t, feed.PartitionName(name, feed.PartitionOf(feed.KeyOf(feed.ByStream, bad), partitions), partitions), dls[0].Checkpoint)

	_, err = feed.RequestReplay(ctx, src.Rows(), name+"/no-such-event")
	require.ErrorIs(t, err, feed.ErrNoDeadLetter)

	// Still broken: the replay fails, the dead letter stays.
	_, err = feed.RequestReplay(ctx, src.Rows(), key)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		req, ok, err := feed.ReadReplay(ctx, src.Rows(), key)
		return err == nil && ok && req.Failed != ""
	}, waitTimeout, 5*time.Millisecond)
	req, _, err := feed.ReadReplay(ctx, src.Rows(), key)
	require.NoError(t, err)
	require.Contains(t, req.Failed, "cannot apply")
	dls, err = p1.p.DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)

	pos, err := p2.p.Position(ctx)
	require.NoError(t, err)
	require.Equal(t, envs[3].Token, pos, "a failed replay leaves the checkpoint where it is")

	// Fixed: asked again while events keep arriving, it is applied once
	// and both rows go; the events around it are applied once, in order.
	broken.Store(false)
	appended := make(chan error, 1)
	go func() {
		for i := range 10 {
			if _, err := s.Append(context.WithoutCancel(ctx), fmt.Sprintf("%s-%d", name, i%2), events.AnyVersion, thing(100+i)); err != nil {
				appended <- err
				return
			}
		}
		appended <- nil
	}()
	_, err = feed.RequestReplay(ctx, src.Rows(), key)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, ok, err := feed.ReadReplay(ctx, src.Rows(), key)
		return err == nil && !ok
	}, waitTimeout, 5*time.Millisecond)
	require.NoError(t, <-appended)
	dls, err = p1.p.DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, dls)
	all := awaitAllOf(t, s, name, 14)
	awaitPosition(t, p1.p, all[len(all)-1].Token)
	requireAppliedOnce(t, src, name, all)
}

// A processor that ran unsplit and is restarted with 4 partitions starts
// them at its old position: nothing it applied is delivered again, and what
// came after is applied once.
func testProcessorRepartition(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("repart")
	first, h := runUnsplit(t, m, s, src, name)
	requireNothingAgain(t, m, s, src, procConfig(name, 4), first, h)
}

// runUnsplit appends events under name and runs a processor of one
// partition named name over them, to the end, with h (which applies each
// once under name); it returns the events and h.
func runUnsplit(t *testing.T, m mode, s events.Store, src feed.Source, name string) ([]events.Envelope, feed.Handler) {
	t.Helper()
	h := func(ctx context.Context, env events.Envelope) error { return applyOnce(ctx, name, env) }
	first := appendSpread(t, s, name, 8, 24)
	one := startProcessor(t, m, src, procConfig(name, 1), h)
	awaitPosition(t, one.p, first[len(first)-1].Token)
	one.stop()
	return first, h
}

// requireNothingAgain starts a processor of cfg on src, appends as many
// events again as first (under cfg's name+"x"), and checks that it
// handles them with h without delivering any of first, and that every
// event, old and new, is applied once (under cfg's name).
func requireNothingAgain(t *testing.T, m mode, s events.Store, src feed.Source, cfg *feed.ProcessorConfig, first []events.Envelope, h feed.Handler) {
	t.Helper()
	seen := map[string]bool{}
	for _, e := range first {
		seen[e.ID] = true
	}
	var redelivered atomic.Int64
	p := startProcessor(t, m, src, cfg, func(ctx context.Context, env events.Envelope) error {
		if seen[env.ID] {
			redelivered.Add(1)
		}
		return h(ctx, env)
	})
	rest := appendSpread(t, s, cfg.Name+"x", 8, len(first))
	awaitPosition(t, p.p, rest[len(rest)-1].Token)
	require.Zero(t, redelivered.Load(), "the new partitions started from the beginning of the feed")
	requireAppliedOnce(t, src, cfg.Name, append(first, rest...))
}

// testProcessorRepartitionFromSplit: a processor of two partitions, one
// of them halted on an event while the other ran to the end, is started
// again with three. The new partitions start at the halted one's
// position, where the other old partition had already handled what
// follows: they skip that and handle the rest, the halted event
// included, so every event is handled exactly once.
func testProcessorRepartitionFromSplit(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("resplit")
	three := procConfig(name, 3)
	// Small pages: some are full and wholly handled already, and the
	// checkpoint moves past them without losing what follows.
	three.Subscriber.BatchSize = 3
	haltSplitThenRepartition(t, m, s, src, name, func(prefix string) []events.Envelope { return appendSpread(t, s, prefix, 8, 24) }, three)
}

// haltSplitThenRepartition runs a processor of two partitions over the
// events spread appends (under name, then name+"x") and one stuck event
// between them, until one partition halts on the stuck event and the other
// reaches the end; then runs next, which must apply every event once.
func haltSplitThenRepartition(t *testing.T, m mode, s events.Store, src feed.Source, name string, spread func(prefix string) []events.Envelope, next *feed.ProcessorConfig) {
	t.Helper()
	stuck := name + "-stuck"
	var failing atomic.Bool
	failing.Store(true)
	h := func(ctx context.Context, env events.Envelope) error {
		if env.StreamID == stuck && failing.Load() {
			return errors.New("not yet")
		}
		return applyOnce(ctx, name, env)
	}
	before := spread(name)
	appendTo(t, s, stuck, 0)
	after := spread(name + "x")
	all, err := s.ReadAll(t.Context(), events.Token{}, 1000)
	require.NoError(t, err)
	require.Len(t, all, len(before)+1+len(after))
	last := all[len(all)-1].Token

	cfg := procConfig(name, 2)
	cfg.MaxAttempts = 1
	two := startProcessor(t, m, src, cfg, h)
	require.Eventually(t, func() bool {
		halted, done := 0, 0
		for _, ps := range two.p.Status().Partitions {
			switch {
			case ps.Halt != nil:
				halted++
			case !ps.Position.Before(last):
				done++
			}
		}
		return halted == 1 && done == 1
	}, waitTimeout, 5*time.Millisecond, "one partition halts on %s, the other reaches the end", stuck)
	two.stop()

	failing.Store(false)
	p := startProcessor(t, m, src, next, h)
	awaitPosition(t, p.p, last)
	requireAppliedOnce(t, src, name, all)
}

// testProcessorReplayFenced: a replay is committed under the partition's
// lease. A holder that stalls in the middle of a replay (it stopped
// renewing, as in a long pause) while another owner takes the partition
// over cannot commit it when it wakes: the handler's writes roll back,
// and the dead letter and the request stay for the new holder.
func testProcessorReplayFenced(t *testing.T, m mode, s events.Store, src feed.Source) {
	ctx := t.Context()
	name := uniqueName("fenced")
	spy := newSpySource(src)
	cfg := procConfig(name, 1)
	cfg.Categories = []string{name}
	cfg.MaxAttempts = 1
	cfg.OnFailure = feed.DeadLetter
	cfg.ReplayCheckInterval = 10 * time.Millisecond
	// A short lease, for the takeover below; a renewal may take up to
	// RenewInterval, which a loaded machine needs: at 20ms the holder
	// lost its lease over and over before the stall.
	cfg.Subscriber.LeaseTTL, cfg.Subscriber.RenewInterval = time.Second, 100*time.Millisecond
	envs := appendSpread(t, s, name, 2, 4)
	bad := envs[1]
	var broken atomic.Bool
	broken.Store(true)
	inReplay, proceed := make(chan struct{}), make(chan struct{})
	var once sync.Once
	h := func(ctx context.Context, env events.Envelope) error {
		if env.ID == bad.ID {
			if broken.Load() {
				return errors.New("cannot apply " + env.ID)
			}
			once.Do(func() {
				close(inReplay)
				<-proceed
			})
		}
		return applyOnce(ctx, name, env)
	}
	p := startProcessor(t, m, spy, cfg, h)
	awaitPosition(t, p.p, envs[3].Token)
	dls, err := p.p.DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	key := dls[0].Checkpoint + "/" + bad.ID

	broken.Store(false)
	_, err = feed.RequestReplay(ctx, src.Rows(), key)
	require.NoError(t, err)
	<-inReplay
	// The holder stalls in the replay and stops renewing; once its lease
	// has expired another owner takes the partition.
	spy.cps.pauseRenews.Store(true)
	require.Eventually(t, func() bool {
		_, err := src.Checkpoints().Acquire(ctx, name, "intruder", time.Hour)
		return err == nil
	}, waitTimeout, 10*time.Millisecond)
	close(proceed)

	// The stale holder's commit is fenced off and rolls back: it gives up
	// the partition, and nothing of the replay landed.
	require.Eventually(t, func() bool {
		return p.p.Status().Partitions[0].Consumer.Lost > 0
	}, waitTimeout, 5*time.Millisecond, "the stalled holder notices it lost the partition")
	rows, err := src.Rows().List(ctx, name, appliedTable, feed.RowQuery{Limit: 100})
	require.NoError(t, err)
	for _, r := range rows {
		require.NotEqual(t, bad.ID, r.Key, "the fenced replay applied nothing")
	}
	dls, err = p.p.DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Len(t, dls, 1, "the dead letter stays for the new holder")
	_, ok, err := feed.ReadReplay(ctx, src.Rows(), key)
	require.NoError(t, err)
	require.True(t, ok, "so does the request")
}

// testProcessorReplayAfterRepartition: a dead letter recorded under a
// partition count that has since changed is still replayed on request,
// by the partition its event belongs to now (nobody holds the old
// checkpoints any more), once.
func testProcessorReplayAfterRepartition(t *testing.T, m mode, s events.Store, src feed.Source) {
	ctx := t.Context()
	name := uniqueName("redl")
	var broken atomic.Bool
	broken.Store(true)
	envs := appendSpread(t, s, name, 4, 12)
	bad := envs[5]
	h := failingOn(name, bad, &broken)
	cfg := func(n int) *feed.ProcessorConfig {
		c := procConfig(name, n)
		c.MaxAttempts = 1
		c.OnFailure = feed.DeadLetter
		c.ReplayCheckInterval = 10 * time.Millisecond
		return c
	}
	two := startProcessor(t, m, src, cfg(2), h)
	awaitPosition(t, two.p, envs[len(envs)-1].Token)
	dls, err := two.p.DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Len(t, dls, 1)
	key := dls[0].Checkpoint + "/" + bad.ID
	two.stop()

	broken.Store(false)
	three := startProcessor(t, m, src, cfg(3), h)
	awaitPosition(t, three.p, envs[len(envs)-1].Token)
	_, err = feed.RequestReplay(ctx, src.Rows(), key)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		_, ok, err := feed.ReadReplay(ctx, src.Rows(), key)
		return err == nil && !ok
	}, waitTimeout, 5*time.Millisecond, "the request for %s is carried out", key)
	dls, err = three.p.DeadLetters(ctx, 0)
	require.NoError(t, err)
	require.Empty(t, dls)
	requireAppliedOnce(t, src, name, envs)
}
