package lag

import (
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// Table writes reports as an aligned text table, one projection a line:
//
//	PROJECTION  CHECKPOINT                 BEHIND  TIME LAG  HEARTBEAT  SLA  STATUS
//	orders      v2.----------3----------F  2       15s       1.2s       2s   BREACH
//	reports     v2.----------B----------k  0       0s        800ms      30s  ok
//
// BEHIND is the position lag in events, TIME LAG how long the oldest
// unprocessed event has waited, HEARTBEAT how long ago the lease holder
// was last heard of ("-" when never). STATUS is "ok" or "BREACH", with
// "BREACH (stalled)" for a projection with work and no live runner. When
// an open transaction has held the read horizon back for a second or more,
// a last line says for how long (shorter holds are ordinary commits).
func Table(w io.Writer, reports []Report) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tCHECKPOINT\tBEHIND\tTIME LAG\tHEARTBEAT\tSLA\tSTATUS")
	var horizon time.Duration
	for _, r := range reports {
		heartbeat := "-"
		// A holder heard from just now (or by a clock a little ahead of
		// this one's) has an age of 0, not none.
		if r.HeartbeatAge > 0 || r.Owner != "" {
			heartbeat = FormatDuration(r.HeartbeatAge)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\n", r.Name, r.Checkpoint, r.PositionLag,
			FormatDuration(r.TimeLag), heartbeat, FormatDuration(r.SLA), status(r))
		horizon = max(horizon, r.HorizonAge)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if horizon >= horizonNotice {
		_, err := fmt.Fprintf(w, "read horizon held back %s by an open transaction: events committed since wait for it\n", FormatDuration(horizon))
		return err
	}
	return nil
}

// horizonNotice is the horizon age from which Table mentions it.
const horizonNotice = time.Second

func status(r Report) string {
	switch {
	case !r.Breached:
		return "ok"
	case r.Reason == ReasonStalled:
		return "BREACH (stalled)"
	default:
		return "BREACH"
	}
}

// FormatDuration rounds d for people: exact under a millisecond,
// milliseconds under a second, tenths of a second under a minute, whole
// seconds above.
func FormatDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return d.String()
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}
