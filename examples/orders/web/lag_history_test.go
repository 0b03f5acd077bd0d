package web_test

import (
	"context"
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
	h := web.NewLagHistory(&web.LagHistoryConfig{Window: time.Minute, MaxPoints: 4})
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

	h := web.NewLagHistory(nil)
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
