package lag_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/clocktest"
)

func TestCaughtUpProjectionDoesNotBreach(t *testing.T) {
	t.Parallel()
	b := setup(t, &lag.Config{Projections: []lag.Target{{Name: "orders"}}})
	head := b.store.append(3)
	b.store.commit("orders", head)
	// A quiet hour: nothing is waiting, so there is no lag however long
	// ago the last event was processed.
	b.clock.Advance(time.Hour)

	r := b.check(t, "orders")
	require.Equal(t, lag.Report{
		Name: "orders", Owner: "runner-1", Checkpoint: head, Head: head,
		HeartbeatAge: time.Hour, SLA: lag.UserFacingSLA, At: t0.Add(time.Hour),
	}, r)
	breaches, recovered := b.hooks.counts()
	require.Zero(t, breaches)
	require.Zero(t, recovered)
	require.Zero(t, b.metric(t, lag.MetricBreached, "orders"))
	require.Zero(t, b.metric(t, lag.MetricBreaches, "orders"))
	require.Zero(t, b.metric(t, lag.MetricTimeLag, "orders"))
	require.Equal(t, 2.0, b.metric(t, lag.MetricSLA, "orders"))
	require.Equal(t, 3600.0, b.metric(t, lag.MetricHeartbeatAge, "orders"))
}

func TestBreachFiresOnceAndRecoversOnce(t *testing.T) {
	t.Parallel()
	b := setup(t, &lag.Config{Projections: []lag.Target{{Name: "orders", SLA: 2 * time.Second}}})
	b.store.commit("orders", b.store.append(1))
	head := b.store.append(2) // unprocessed since t0

	b.clock.Advance(time.Second)
	r := b.check(t, "orders")
	require.False(t, r.Breached, "1s behind is within a 2s SLA")
	require.Equal(t, time.Second, r.TimeLag)
	require.Equal(t, int64(2), r.PositionLag)

	b.clock.Advance(2 * time.Second)
	breachedAt := b.clock.Now()
	for i := range 4 {
		r = b.check(t, "orders")
		require.True(t, r.Breached, "pass %d", i)
		require.Equal(t, lag.ReasonTimeLag, r.Reason)
		require.Equal(t, 1.0, b.metric(t, lag.MetricBreached, "orders"))
		require.Equal(t, 1.0, b.metric(t, lag.MetricBreaches, "orders"), "one breach, however many passes see it")
		b.clock.Advance(time.Second)
	}
	breaches, recovered := b.hooks.counts()
	require.Equal(t, 1, breaches)
	require.Zero(t, recovered)
	br := b.hooks.breaches[0]
	require.Equal(t, lag.ReasonTimeLag, br.Reason)
	require.Equal(t, breachedAt, br.Since)
	require.Equal(t, breachedAt, br.At)
	require.Equal(t, 3*time.Second, br.Report.TimeLag)
	require.Equal(t, 1, strings.Count(b.logs.String(), "breaches its SLA"), b.logs.String())
	require.Contains(t, b.logs.String(), "level=WARN")

	b.store.commit("orders", head)
	recoveredAt := b.clock.Now()
	for range 3 {
		r = b.check(t, "orders")
		require.False(t, r.Breached)
		require.Empty(t, r.Reason)
		require.Zero(t, b.metric(t, lag.MetricBreached, "orders"))
		b.clock.Advance(time.Second)
	}
	breaches, recovered = b.hooks.counts()
	require.Equal(t, 1, breaches)
	require.Equal(t, 1, recovered)
	rec := b.hooks.recovered[0]
	require.Equal(t, lag.ReasonTimeLag, rec.Reason, "the recovery names the breach that ended")
	require.Equal(t, breachedAt, rec.Since)
	require.Equal(t, recoveredAt, rec.At)
	require.Zero(t, rec.Report.TimeLag)
	require.Equal(t, 1.0, b.metric(t, lag.MetricBreaches, "orders"))
	require.Equal(t, 1, strings.Count(b.logs.String(), "back within its SLA"), b.logs.String())

	// A second breach is a new one.
	b.store.append(1)
	b.clock.Advance(3 * time.Second)
	require.True(t, b.check(t, "orders").Breached)
	breaches, _ = b.hooks.counts()
	require.Equal(t, 2, breaches)
	require.Equal(t, 2.0, b.metric(t, lag.MetricBreaches, "orders"))
}

// TestTimeLagIsAgeOfOldestUnprocessedEvent tells the right measure from the
// two tempting wrong ones: the age of the last processed event (25s) and of
// the newest event (5s).
func TestTimeLagIsAgeOfOldestUnprocessedEvent(t *testing.T) {
	t.Parallel()
	b := setup(t, &lag.Config{Projections: []lag.Target{{Name: "orders", SLA: lag.AnalyticsSLA}}})
	processed := b.store.append(1) // t0
	b.clock.Advance(10 * time.Second)
	b.store.append(1) // t0+10s: the oldest unprocessed
	b.clock.Advance(10 * time.Second)
	b.store.append(1) // t0+20s
	b.store.commit("orders", processed)
	b.clock.Advance(5 * time.Second) // now t0+25s

	r := b.check(t, "orders")
	require.Equal(t, 15*time.Second, r.TimeLag)
	require.Equal(t, int64(2), r.PositionLag)
	require.Equal(t, 5*time.Second, r.HeartbeatAge)
	require.False(t, r.Breached, "15s is within the analytics SLA")
	require.Equal(t, 15.0, b.metric(t, lag.MetricTimeLag, "orders"))
	require.Equal(t, 2.0, b.metric(t, lag.MetricPositionLag, "orders"))
	require.Equal(t, 30.0, b.metric(t, lag.MetricSLA, "orders"))
}

func TestStaleHeartbeatWhileBehindBreaches(t *testing.T) {
	t.Parallel()
	b := setup(t, &lag.Config{Projections: []lag.Target{
		{Name: "idle", SLA: lag.AnalyticsSLA},
		{Name: "never_ran"},
		{Name: "reports", SLA: lag.AnalyticsSLA, Class: "analytics"},
	}})
	head := b.store.append(1)
	b.store.commit("reports", head)
	b.clock.Advance(12 * time.Second) // the runner dies without a word
	b.store.append(1)
	b.store.commit("idle", b.store.append(1))
	b.clock.Advance(time.Second)
	b.store.commit("idle", token(3)) // idle's runner is alive and caught up

	reports, err := b.mon.Check(t.Context())
	require.NoError(t, err)
	require.Len(t, reports, 3)
	require.Equal(t, []string{"idle", "never_ran", "reports"}, []string{reports[0].Name, reports[1].Name, reports[2].Name},
		"reports follow Config.Projections")

	idle := reports[0]
	require.False(t, idle.Breached)
	require.Zero(t, idle.HeartbeatAge)

	never := reports[1]
	require.True(t, never.Checkpoint.IsZero(), "an unknown consumer is at the start of the feed")
	require.Equal(t, int64(3), never.PositionLag)
	require.Equal(t, 13*time.Second, never.TimeLag)
	require.Zero(t, never.HeartbeatAge, "no heartbeat was ever seen")
	require.Empty(t, never.Owner)
	require.Equal(t, lag.UserFacingSLA, never.SLA)
	require.Equal(t, lag.ReasonTimeLag, never.Reason)

	rep := reports[2]
	require.Equal(t, "analytics", rep.Class)
	require.Equal(t, time.Second, rep.TimeLag, "well within 30s ...")
	require.Equal(t, 13*time.Second, rep.HeartbeatAge, "... but nobody has heard of the runner for 13s")
	require.True(t, rep.Breached)
	require.Equal(t, lag.ReasonStalled, rep.Reason)
	require.Equal(t, 13.0, b.metric(t, lag.MetricHeartbeatAge, "reports"))
	require.Equal(t, 1.0, b.metric(t, lag.MetricBreached, "reports"))
}

func TestStaleHeartbeatRuleCanBeTurnedOff(t *testing.T) {
	t.Parallel()
	b := setup(t, &lag.Config{StaleHeartbeat: -1, DefaultSLA: lag.AnalyticsSLA})
	b.store.commit("reports", b.store.append(1))
	b.clock.Advance(time.Minute)
	b.store.append(1)
	b.clock.Advance(time.Second)

	r := b.check(t, "reports")
	require.Equal(t, time.Minute+time.Second, r.HeartbeatAge)
	require.False(t, r.Breached)
}

func TestHorizonAge(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	b.store.commit("orders", b.store.append(1))
	b.store.setHorizon(7 * time.Second)

	r := b.check(t, "orders")
	require.Equal(t, 7*time.Second, r.HorizonAge)
	require.Equal(t, 7.0, b.metric(t, lag.MetricHorizonAge, ""))

	b.store.setHorizon(0)
	require.Zero(t, b.check(t, "orders").HorizonAge)
	require.Zero(t, b.metric(t, lag.MetricHorizonAge, ""))
}

func TestWatchesEveryConsumerWhenNoneAreListed(t *testing.T) {
	t.Parallel()
	b := setup(t, &lag.Config{DefaultSLA: 5 * time.Second})
	b.store.append(2)
	b.store.commit("b", token(1))
	b.store.commit("a", token(2))
	b.store.commit("c", token(0))
	b.clock.Advance(6 * time.Second)

	reports, err := b.mon.Check(t.Context())
	require.NoError(t, err)
	require.Len(t, reports, 3)
	for i, name := range []string{"a", "b", "c"} {
		require.Equal(t, name, reports[i].Name, "sorted by name")
		require.Equal(t, 5*time.Second, reports[i].SLA)
	}
	require.Equal(t, reports, b.mon.Reports())
	require.True(t, reports[1].Breached)
	require.Equal(t, 3, testutil.CollectAndCount(b.reg, lag.MetricTimeLag))

	// A consumer deleted from the store leaves the reports and the metrics.
	b.store.remove("b")
	reports, err = b.mon.Check(t.Context())
	require.NoError(t, err)
	require.Len(t, reports, 2)
	for _, name := range []string{lag.MetricPositionLag, lag.MetricTimeLag, lag.MetricHeartbeatAge, lag.MetricSLA, lag.MetricBreached, lag.MetricBreaches} {
		require.Equal(t, 2, testutil.CollectAndCount(b.reg, name), name)
	}
	_, recovered := b.hooks.counts()
	require.Zero(t, recovered, "a deleted consumer did not recover")
}

func TestMetricsExposition(t *testing.T) {
	t.Parallel()
	b := setup(t, &lag.Config{Projections: []lag.Target{{Name: "orders", SLA: 2 * time.Second}}})
	b.store.commit("orders", b.store.append(1))
	b.store.append(4)
	b.store.setHorizon(1500 * time.Millisecond)
	b.clock.Advance(2500 * time.Millisecond)
	_, err := b.mon.Check(t.Context())
	require.NoError(t, err)

	const want = `
# HELP converge_projection_heartbeat_age_seconds Seconds since the projection's lease holder last renewed or committed.
# TYPE converge_projection_heartbeat_age_seconds gauge
converge_projection_heartbeat_age_seconds{projection="orders"} 2.5
# HELP converge_projection_position_lag_events Events after the projection's checkpoint up to the head of the feed.
# TYPE converge_projection_position_lag_events gauge
converge_projection_position_lag_events{projection="orders"} 4
# HELP converge_projection_sla_breached 1 while the projection breaches its SLA, else 0.
# TYPE converge_projection_sla_breached gauge
converge_projection_sla_breached{projection="orders"} 1
# HELP converge_projection_sla_breaches_total Times the projection started breaching its SLA.
# TYPE converge_projection_sla_breaches_total counter
converge_projection_sla_breaches_total{projection="orders"} 1
# HELP converge_projection_sla_seconds Time lag the projection may reach without breaching its SLA.
# TYPE converge_projection_sla_seconds gauge
converge_projection_sla_seconds{projection="orders"} 2
# HELP converge_projection_time_lag_seconds How long the projection's oldest unprocessed event has been waiting; 0 when caught up.
# TYPE converge_projection_time_lag_seconds gauge
converge_projection_time_lag_seconds{projection="orders"} 2.5
# HELP converge_read_horizon_age_seconds Seconds the oldest open transaction has been holding event delivery back; 0 when none is.
# TYPE converge_read_horizon_age_seconds gauge
converge_read_horizon_age_seconds 1.5
`
	require.NoError(t, testutil.GatherAndCompare(b.reg, strings.NewReader(want)))
}

// TestFailedPassChangesNothing: a failed pass leaves the last good pass's
// reports, and LastPass says it failed, and when the last success was,
// until a pass succeeds again.
func TestFailedPassChangesNothing(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	at, err := b.mon.LastPass()
	require.NoError(t, err)
	require.True(t, at.IsZero(), "no pass yet")
	b.store.commit("orders", b.store.append(1))
	first, err := b.mon.Check(t.Context())
	require.NoError(t, err)
	at, err = b.mon.LastPass()
	require.NoError(t, err)
	require.Equal(t, first[0].At, at)

	boom := errors.New("connection refused")
	b.store.fail(boom)
	_, err = b.mon.Check(t.Context())
	require.ErrorIs(t, err, boom)
	require.ErrorContains(t, err, "lag: head of the feed")
	require.Equal(t, first, b.mon.Reports())
	failedAt, err := b.mon.LastPass()
	require.ErrorIs(t, err, boom)
	require.Equal(t, at, failedAt, "the last success is still the first pass")

	// A pass its caller cancelled is no failure of the store.
	b.store.fail(nil)
	_, err = b.mon.Check(t.Context())
	require.NoError(t, err)
	cancelled, cancel := context.WithCancel(t.Context())
	cancel()
	_, err = b.mon.Check(cancelled)
	require.ErrorIs(t, err, context.Canceled)
	_, err = b.mon.LastPass()
	require.NoError(t, err, "a cancelled pass is reported as a failed one")
	// Nor is one whose caller's deadline passed before PassTimeout.
	expired, cancel := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel()
	_, err = b.mon.Check(expired)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = b.mon.LastPass()
	require.NoError(t, err, "a pass its caller's deadline ended is reported as a failed one")

	again, err := b.mon.Check(t.Context())
	require.NoError(t, err)
	at, err = b.mon.LastPass()
	require.NoError(t, err)
	require.Equal(t, again[0].At, at)
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	clock := clocktest.New(t0)
	store := newFakeStore(clock)
	store.commit("orders", store.append(1))
	mon, err := lag.NewMonitor(store, nil)
	require.NoError(t, err)
	require.Nil(t, mon.Reports(), "no pass yet")
	reports, err := mon.Check(t.Context())
	require.NoError(t, err)
	require.Len(t, reports, 1)
	require.Equal(t, lag.UserFacingSLA, reports[0].SLA)
	require.Equal(t, lag.DefaultSLA, lag.UserFacingSLA)
}

func TestConfigErrors(t *testing.T) {
	t.Parallel()
	store := newFakeStore(clocktest.New(t0))
	for want, cfg := range map[string]*lag.Config{
		"Config.DefaultSLA is -1s":                 {DefaultSLA: -time.Second},
		"Config.Interval is -1s":                   {Interval: -time.Second},
		"Config.PassTimeout is -1s":                {PassTimeout: -time.Second},
		"Config.Projections[1].Name is empty":      {Projections: []lag.Target{{Name: "a"}, {}}},
		`projection "a" is listed twice`:           {Projections: []lag.Target{{Name: "a"}, {Name: "a"}}},
		`Config.Projections[0] ("a"): SLA is -1ns`: {Projections: []lag.Target{{Name: "a", SLA: -1}}},
	} {
		_, err := lag.NewMonitor(store, cfg)
		require.ErrorContains(t, err, want)
	}
	// Any positive Interval below MinInterval is refused; MinInterval is not.
	tiny := 1 + rand.N(lag.MinInterval-1)
	_, err := lag.NewMonitor(store, &lag.Config{Interval: tiny})
	require.ErrorContains(t, err, fmt.Sprintf("Config.Interval is %s: use 0 for the default (1s) or at least 10ms", tiny))
	_, err = lag.NewMonitor(store, &lag.Config{Interval: lag.MinInterval, Registerer: prometheus.NewRegistry()})
	require.NoError(t, err)
	_, err = lag.NewMonitor(nil, nil)
	require.ErrorContains(t, err, "NewMonitor needs a feed.Inspector")
}

func TestTwoMonitorsOnOneRegistry(t *testing.T) {
	t.Parallel()
	store := newFakeStore(clocktest.New(t0))
	reg := prometheus.NewRegistry()
	_, err := lag.NewMonitor(store, &lag.Config{Registerer: reg})
	require.NoError(t, err)
	_, err = lag.NewMonitor(store, &lag.Config{Registerer: reg})
	require.ErrorContains(t, err, "give each Monitor its own Registerer")
}

func TestStartRunsPassesUntilStop(t *testing.T) {
	t.Parallel()
	b := setup(t, &lag.Config{Interval: lag.MinInterval})
	b.store.commit("orders", b.store.append(1))
	b.store.append(1)
	b.clock.Advance(time.Minute)

	passed := b.mon.Passed()
	require.NoError(t, b.mon.Start(t.Context()))
	require.ErrorIs(t, b.mon.Start(t.Context()), lag.ErrAlreadyStarted)
	await(t, passed, "the first pass runs at once")
	passed = b.mon.Passed()
	await(t, passed, "the ticker runs the next")
	require.True(t, b.mon.Reports()[0].Breached)
	breaches, _ := b.hooks.counts()
	require.Equal(t, 1, breaches)

	// A failing pass is logged, and the loop carries on.
	b.store.fail(errors.New("connection refused"))
	passed = b.mon.Passed()
	await(t, passed, "a failing pass")
	passed = b.mon.Passed()
	await(t, passed, "the pass after it")
	require.Contains(t, b.logs.String(), "pass failed")

	require.NoError(t, b.mon.Stop(t.Context()))
	await(t, b.mon.Stopped(), "Stopped is closed after Stop")
	require.NoError(t, b.mon.Stop(t.Context()), "stopping twice is harmless")
	require.ErrorIs(t, b.mon.Start(t.Context()), lag.ErrAlreadyStarted)
}

func TestStartEndsWithItsContext(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	ctx, cancel := context.WithCancel(t.Context())
	require.NoError(t, b.mon.Start(ctx))
	cancel()
	await(t, b.mon.Stopped(), "Stopped is closed when Start's context ends")
	require.NoError(t, b.mon.Stop(t.Context()))
}

func TestStopWithoutStart(t *testing.T) {
	t.Parallel()
	b := setup(t, nil)
	require.NoError(t, b.mon.Stop(t.Context()))
	await(t, b.mon.Stopped(), "Stopped is closed")
}

func TestPassTimeout(t *testing.T) {
	t.Parallel()
	clock := clocktest.New(t0)
	mon, err := lag.NewMonitor(blockingStore{newFakeStore(clock)}, &lag.Config{PassTimeout: time.Millisecond, Clock: clock})
	require.NoError(t, err)
	_, err = mon.Check(t.Context())
	require.ErrorIs(t, err, context.DeadlineExceeded)
	_, err = mon.LastPass()
	require.ErrorIs(t, err, context.DeadlineExceeded, "a pass over its own PassTimeout is a failed one")
}

// blockingStore's Head waits for its context to end.
type blockingStore struct{ *fakeStore }

func (blockingStore) Head(ctx context.Context) (events.Token, error) {
	<-ctx.Done()
	return events.Token{}, ctx.Err()
}

// await waits for ch with a generous deadline, failing the test with what
// it waited for.
func await(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "timed out waiting: "+what)
	}
}

// TestCheckBehindASlowPassHasItsOwnBudget: a Check that waits for a slow
// pass to end gets its whole PassTimeout once it runs; it does not spend
// it waiting, then record a failure of a store that answers.
func TestCheckBehindASlowPassHasItsOwnBudget(t *testing.T) {
	t.Parallel()
	clock := clocktest.New(t0)
	st := &firstHeadBlocks{fakeStore: newFakeStore(clock), entered: make(chan struct{})}
	mon, err := lag.NewMonitor(st, &lag.Config{PassTimeout: 200 * time.Millisecond, Clock: clock})
	require.NoError(t, err)
	first := make(chan error, 1)
	go func() {
		_, err := mon.Check(t.Context())
		first <- err
	}()
	<-st.entered // the first pass holds the monitor, stuck in Head
	_, err = mon.Check(t.Context())
	require.NoError(t, err, "the second pass ran on a store that answers")
	require.ErrorIs(t, <-first, context.DeadlineExceeded)
	_, lastErr := mon.LastPass()
	require.NoError(t, lastErr, "the last pass succeeded")
}

// firstHeadBlocks's first Head waits for its context to end; the others
// answer.
type firstHeadBlocks struct {
	*fakeStore
	once    sync.Once
	entered chan struct{}
}

func (f *firstHeadBlocks) Head(ctx context.Context) (events.Token, error) {
	blocked := false
	f.once.Do(func() {
		blocked = true
		close(f.entered)
	})
	if blocked {
		<-ctx.Done()
		return events.Token{}, ctx.Err()
	}
	return f.fakeStore.Head(ctx)
}

// Overdue: a last success older than OverdueAfter Intervals (passes hang
// or stopped) is overdue; a new success clears it. Over random intervals
// and ages.
func TestOverdueAfterIntervalsWithoutASuccess(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	for range 20 {
		interval := time.Duration(10+rng.IntN(4991)) * time.Millisecond // Config.Interval refuses less than 10ms
		b := setup(t, &lag.Config{Interval: interval})
		age, late := b.mon.Overdue()
		require.Zero(t, age)
		require.False(t, late, "nothing measured is not overdue: LastPass says none ran")
		_, err := b.mon.Check(t.Context())
		require.NoError(t, err)
		limit := lag.OverdueAfter * interval
		within := time.Duration(rng.Int64N(int64(limit) + 1))
		b.clock.Advance(within)
		age, late = b.mon.Overdue()
		require.Equal(t, within, age)
		require.False(t, late, "%s after a pass, interval %s", within, interval)
		b.clock.Advance(limit - within + time.Duration(1+rng.IntN(1000)))
		_, late = b.mon.Overdue()
		require.True(t, late, "past %d intervals of %s", lag.OverdueAfter, interval)
		_, err = b.mon.Check(t.Context())
		require.NoError(t, err)
		age, late = b.mon.Overdue()
		require.Zero(t, age)
		require.False(t, late)
	}
}

// TestOverdueNeverForIntervalsPastTheLimitsRange: an Interval so long that
// OverdueAfter of them overflow a Duration is never overdue, however old
// the last success, over random such intervals and ages.
func TestOverdueNeverForIntervalsPastTheLimitsRange(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 12))
	for range 20 {
		least := int64(math.MaxInt64/lag.OverdueAfter) + 1
		interval := time.Duration(least + rng.Int64N(math.MaxInt64-least))
		b := setup(t, &lag.Config{Interval: interval})
		_, err := b.mon.Check(t.Context())
		require.NoError(t, err)
		b.clock.Advance(time.Duration(rng.Int64N(math.MaxInt64)))
		age, late := b.mon.Overdue()
		require.False(t, late, "interval %s, %s after the last success", interval, age)
	}
}
