package lag_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
)

func TestTable(t *testing.T) {
	t.Parallel()
	reports := []lag.Report{
		{
			Name: "order_summary", Checkpoint: events.MakeToken(1, 1), PositionLag: 12, TimeLag: 3456 * time.Millisecond,
			HeartbeatAge: 800 * time.Millisecond, SLA: lag.UserFacingSLA, Breached: true, Reason: lag.ReasonTimeLag,
		},
		{Name: "sales_report", Checkpoint: events.MakeToken(3, 3), SLA: lag.AnalyticsSLA, HeartbeatAge: 90*time.Second + 400*time.Millisecond},
		{Name: "search", PositionLag: 1, TimeLag: 250 * time.Microsecond, SLA: lag.AnalyticsSLA, Breached: true, Reason: lag.ReasonStalled},
	}
	var out bytes.Buffer
	require.NoError(t, lag.Table(&out, reports))
	require.Equal(t, ""+
		"PROJECTION     CHECKPOINT                 BEHIND  TIME LAG  HEARTBEAT  SLA  STATUS\n"+
		"order_summary  v2.----------3----------F  12      3.5s      800ms      2s   BREACH\n"+
		"sales_report   v2.----------B----------k  0       0s        1m30s      30s  ok\n"+
		"search         v2.----------------------  1       250µs     -          30s  BREACH (stalled)\n",
		out.String())

	out.Reset()
	reports[0].HorizonAge = 42 * time.Second
	require.NoError(t, lag.Table(&out, reports[:1]))
	require.Contains(t, out.String(), "\nread horizon held back 42s by an open transaction")

	out.Reset()
	reports[0].HorizonAge = 999 * time.Millisecond
	require.NoError(t, lag.Table(&out, reports[:1]))
	require.NotContains(t, out.String(), "horizon", "holds under a second are ordinary commits")

	out.Reset()
	require.NoError(t, lag.Table(&out, nil))
	require.Equal(t, "PROJECTION  CHECKPOINT  BEHIND  TIME LAG  HEARTBEAT  SLA  STATUS\n", out.String())
}

func TestReportJSON(t *testing.T) {
	t.Parallel()
	r := lag.Report{
		Name: "orders", Class: "user-facing", Owner: "host-1/0",
		Checkpoint: events.MakeToken(1, 1), Head: events.MakeToken(3, 3),
		PositionLag: 2, TimeLag: 2500 * time.Millisecond, HeartbeatAge: time.Second, HorizonAge: 0,
		SLA: 2 * time.Second, Breached: true, Reason: lag.ReasonTimeLag, At: t0,
	}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	require.JSONEq(t, `{
		"projection": "orders", "class": "user-facing", "owner": "host-1/0",
		"checkpoint": "v2.----------3----------F", "head": "v2.----------B----------k",
		"behind_events": 2, "time_lag_seconds": 2.5, "heartbeat_age_seconds": 1,
		"horizon_age_seconds": 0, "sla_seconds": 2, "breached": true, "reason": "time_lag",
		"at": "2026-03-01T12:00:00Z"
	}`, string(b))

	var back lag.Report
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, r, back)
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                        "0s",
		1:                        "1ns",
		250 * time.Microsecond:   "250µs",
		1234 * time.Microsecond:  "1ms",
		999 * time.Millisecond:   "999ms",
		1234 * time.Millisecond:  "1.2s",
		61500 * time.Millisecond: "1m2s",
		2 * time.Hour:            "2h0m0s",
	} {
		require.Equal(t, want, lag.FormatDuration(d), d.String())
	}
}
