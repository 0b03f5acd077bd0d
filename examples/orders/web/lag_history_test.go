package web_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/examples/orders/web"
)

func TestLagHistory_KeepsTheWindowInARing(t *testing.T) {
	t.Parallel()
	h := newLagHistory(t, &web.LagHistoryConfig{Window: time.Minute, MaxPoints: 4})
	t0 := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	for i := range 6 {
		h.Record([]lag.Report{
			{
				Name: "b_view", SLA: 2 * time.Second, TimeLag: time.Duration(i) * time.Second, PositionLag: int64(i), At: t0.Add(time.Duration(i) * 20 * time.Second),
				Breached: i >= 3, Reason: map[bool]lag.Reason{true: lag.ReasonTimeLag}[i >= 3],
			},
			{Name: "a_view", SLA: time.Second, At: t0.Add(time.Duration(i) * 20 * time.Second)},
		})
	}
	s := h.Snapshot(t0.Add(101 * time.Second))
	require.EqualValues(t, 60_000, s.WindowMillis)
	require.Len(t, s.Projections, 2)
	b := s.Projections[0]
	require.Equal(t, "b_view", b.Name, "first-seen order")
	require.EqualValues(t, 2000, b.SLAMillis)
	require.True(t, b.Breached)
	require.Equal(t, "time_lag", b.Reason)
	require.EqualValues(t, 5000, b.TimeLagMillis)
	// Six samples, four kept (the ring), three within the last minute,
	// oldest first.
	var lags []int64
	for _, p := range b.Points {
		lags = append(lags, p.TimeLagMillis)
	}
	require.Equal(t, []int64{3000, 4000, 5000}, lags)
	require.Len(t, s.Projections[1].Points, 3)
	require.False(t, s.Projections[1].Breached)
}

func TestLagHistory_FollowsAMonitor(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, err := memstore.New(nil)
	require.NoError(t, err)
	defer store.Close()
	_, err = store.Append(ctx, "s-1", events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
	require.NoError(t, err)
	mon, err := lag.NewMonitor(store, &lag.Config{Projections: []lag.Target{{Name: "never_ran", SLA: time.Hour}}, Interval: time.Hour})
	require.NoError(t, err)

	h := newLagHistory(t, nil)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); h.Follow(fctx, mon) }()
	// Follow may not be waiting yet: pass until it has recorded.
	for len(h.Snapshot(time.Now()).Projections) == 0 {
		passed := mon.Passed()
		_, err := mon.Check(ctx)
		require.NoError(t, err)
		<-passed
	}
	cancel()
	<-done
	p := h.Snapshot(time.Now()).Projections[0]
	require.Equal(t, "never_ran", p.Name)
	require.EqualValues(t, 1, p.Behind)
	require.NotEmpty(t, p.Points)
}

// TestLagHistory_Property records random passes (projections appearing
// over time, random lags and verdicts, time moving on) into histories of
// random sizes, or the defaults (5 minutes, 300 points), and checks every
// snapshot against the doc: projections in first-seen order with their
// latest verdict, the SLA, and of the last MaxPoints samples those within
// the window, oldest first.
func TestLagHistory_Property(t *testing.T) {
	t.Parallel()
	for seed := range uint64(20) {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewPCG(seed, 0x1a9))
			window, points := 5*time.Minute, 300
			var h *web.LagHistory
			if rng.IntN(3) == 0 {
				h = newLagHistory(t, nil)
			} else {
				window, points = time.Duration(1+rng.IntN(20))*time.Second, 1+rng.IntN(12)
				h = newLagHistory(t, &web.LagHistoryConfig{Window: window, MaxPoints: points})
			}
			// Steps of window/points on average, or shorter: sometimes the
			// ring drops points first, sometimes the window does.
			maxStep := int(2*window/time.Millisecond) / points / (1 + rng.IntN(3))
			passes := 40 + rng.IntN(400)
			if points == 300 {
				passes = 500 + rng.IntN(100)
			}
			var passTimes []time.Time
			names := []string{"order_summary", "customer_spending", "customer_orders"}
			var order []string
			all := map[string][]lag.Report{}
			now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
			for pass := range passes {
				now = now.Add(time.Duration(rng.IntN(maxStep+1)) * time.Millisecond)
				passTimes = append(passTimes, now)
				var reports []lag.Report
				for _, name := range names[:min(len(names), 1+pass/10)] {
					if rng.IntN(4) == 0 {
						continue // not in this pass
					}
					r := lag.Report{
						Name: name, Class: "c-" + name, SLA: time.Duration(1+rng.IntN(30)) * time.Second, At: now,
						TimeLag: time.Duration(rng.IntN(60_000)) * time.Millisecond, PositionLag: int64(rng.IntN(1000)),
					}
					if r.TimeLag > r.SLA {
						r.Breached, r.Reason = true, lag.ReasonTimeLag
					}
					if len(all[name]) == 0 {
						order = append(order, name)
					}
					all[name] = append(all[name], r)
					reports = append(reports, r)
				}
				h.Record(reports)

				at := now.Add(time.Duration(rng.IntN(int(2*window/time.Millisecond))) * time.Millisecond)
				if rng.IntN(3) == 0 {
					// A sample exactly as old as the window is within it.
					at = passTimes[rng.IntN(len(passTimes))].Add(window)
					at = at.Add(max(0, now.Sub(at)))
				}
				s := h.Snapshot(at)
				require.Equal(t, window.Milliseconds(), s.WindowMillis, "seed %d", seed)
				require.Equal(t, at.UnixMilli(), s.Now, "seed %d", seed)
				require.Len(t, s.Projections, len(order), "seed %d", seed)
				for i, name := range order {
					got, rs := s.Projections[i], all[name]
					last := rs[len(rs)-1]
					require.Equal(t, name, got.Name, "seed %d: first-seen order", seed)
					require.Equal(t, last.Class, got.Class, "seed %d", seed)
					require.Equal(t, last.SLA.Milliseconds(), got.SLAMillis, "seed %d", seed)
					require.Equal(t, last.Breached, got.Breached, "seed %d", seed)
					require.Equal(t, string(last.Reason), got.Reason, "seed %d", seed)
					require.Equal(t, last.PositionLag, got.Behind, "seed %d", seed)
					require.Equal(t, last.TimeLag.Milliseconds(), got.TimeLagMillis, "seed %d", seed)
					want := []web.LagPoint{}
					for _, r := range rs[max(0, len(rs)-points):] {
						if !r.At.Before(at.Add(-window)) {
							want = append(want, web.LagPoint{At: r.At.UnixMilli(), TimeLagMillis: r.TimeLag.Milliseconds(), Behind: r.PositionLag, Breached: r.Breached})
						}
					}
					require.Equal(t, want, got.Points, "seed %d, pass %d, %s", seed, pass, name)
				}
			}
		})
	}
}

// TestLagHistoryKeepsARepeatedReportOnce: the reports of a failed pass are
// the last good pass's again; recorded any number of times they make one
// point, and the next real report makes the next.
func TestLagHistoryKeepsARepeatedReportOnce(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	h := newLagHistory(t, nil)
	now := time.Now()
	r := lag.Report{Name: "order_summary", SLA: time.Second, At: now, TimeLag: time.Duration(rng.IntN(5000)) * time.Millisecond}
	for range 1 + rng.IntN(10) {
		h.Record([]lag.Report{r})
	}
	require.Len(t, h.Snapshot(now).Projections[0].Points, 1)
	r.At = now.Add(time.Second)
	h.Record([]lag.Report{r})
	require.Len(t, h.Snapshot(r.At).Projections[0].Points, 2)
}

// TestNewLagHistory_RefusesNegativeSizes: a negative Window or MaxPoints
// is refused with an error naming the field and its default, where it
// used to be kept and panic at the first Record; any other value, up to
// the largest int, records and snapshots.
func TestNewLagHistory_RefusesNegativeSizes(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 13))
	now := time.Date(2026, 11, 30, 9, 0, 0, 0, time.UTC)
	for range 200 {
		points := -1 - rng.IntN(math.MaxInt)
		_, err := web.NewLagHistory(&web.LagHistoryConfig{MaxPoints: points})
		require.EqualError(t, err, fmt.Sprintf("web: LagHistoryConfig.MaxPoints is %d: use 0 for the default (300) or a positive number", points))
		window := -time.Duration(1 + rng.Int64N(math.MaxInt64))
		_, err = web.NewLagHistory(&web.LagHistoryConfig{Window: window, MaxPoints: rng.IntN(10)})
		require.EqualError(t, err, fmt.Sprintf("web: LagHistoryConfig.Window is %s: use 0 for the default (5m0s) or a positive duration", window))

		points = rng.IntN(math.MaxInt)
		if rng.IntN(2) == 0 {
			points = rng.IntN(5)
		}
		window = time.Duration(rng.Int64N(math.MaxInt64))
		h, err := web.NewLagHistory(&web.LagHistoryConfig{Window: window, MaxPoints: points})
		require.NoError(t, err, "MaxPoints %d, Window %s", points, window)
		for i := range 3 {
			h.Record([]lag.Report{{Name: "a_view", SLA: time.Second, PositionLag: int64(i), At: now.Add(time.Duration(i) * time.Second)}})
		}
		s := h.Snapshot(now.Add(2 * time.Second))
		require.Len(t, s.Projections, 1)
		require.NotEmpty(t, s.Projections[0].Points)
	}
}
