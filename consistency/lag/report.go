package lag

import (
	"encoding/json"
	"math"
	"time"

	"github.com/converge-es/converge/events"
)

// Reason says why a projection is breached.
type Reason string

const (
	// ReasonTimeLag: the oldest unprocessed event has waited longer than
	// the SLA.
	ReasonTimeLag Reason = "time_lag"
	// ReasonStalled: the projection has unprocessed events and its
	// heartbeat is older than Config.StaleHeartbeat, so nobody is
	// processing them. It fires before the time lag crosses the SLA.
	ReasonStalled Reason = "stalled"
)

// Report is one projection's lag as sampled by one pass.
type Report struct {
	// Name is the projection's consumer name.
	Name string
	// Class is Target.Class ("" when watching every consumer).
	Class string
	// Owner holds the projection's lease; "" when no runner holds it.
	Owner string
	// Checkpoint is the projection's stored position (its slowest
	// partition's, a current partition without a checkpoint yet standing
	// where it will start: see Target.Checkpoints); zero when the store
	// does not know the name.
	Checkpoint events.Token
	// Head is the newest committed event when the pass ran.
	Head events.Token
	// PositionLag is how many events lie after Checkpoint up to Head (the
	// PostgreSQL store stops counting at pgstore.MaxCount).
	PositionLag int64
	// TimeLag is how long the oldest unprocessed event (the first after
	// Checkpoint) has been waiting; 0 when the projection is caught up.
	TimeLag time.Duration
	// HeartbeatAge is how long ago the lease holder last renewed or
	// committed; 0 when the store never saw a heartbeat for the name.
	HeartbeatAge time.Duration
	// HorizonAge is how long the oldest open transaction has been holding
	// delivery back, for every projection alike (in memory: the oldest
	// open unit that appended).
	HorizonAge time.Duration
	// SLA is the time lag the projection may reach without breaching.
	SLA time.Duration
	// Breached reports whether the projection is in breach; Reason says
	// why ("" when it is not).
	Breached bool
	Reason   Reason
	// At is when the pass computed the ages (Config.Clock).
	At time.Time
}

// Breach is handed to Config.OnBreach and Config.OnRecover.
type Breach struct {
	// Report is the pass that saw the breach start, or end.
	Report Report
	// Reason is why the breach started; it stays the same until it ends.
	Reason Reason
	// Since is when the breach was first seen.
	Since time.Time
	// At is when this pass ran; At - Since is how long it has lasted.
	At time.Time
}

// reportJSON is a Report's JSON form: durations in seconds, so tools such
// as jq compare them without parsing Go duration strings.
type reportJSON struct {
	Projection      string       `json:"projection"`
	Class           string       `json:"class,omitempty"`
	Owner           string       `json:"owner"`
	Checkpoint      events.Token `json:"checkpoint"`
	Head            events.Token `json:"head"`
	BehindEvents    int64        `json:"behind_events"`
	TimeLagSeconds  float64      `json:"time_lag_seconds"`
	HeartbeatAgeSec float64      `json:"heartbeat_age_seconds"`
	HorizonAgeSec   float64      `json:"horizon_age_seconds"`
	SLASeconds      float64      `json:"sla_seconds"`
	Breached        bool         `json:"breached"`
	Reason          Reason       `json:"reason,omitempty"`
	At              time.Time    `json:"at"`
}

// MarshalJSON writes a report as one flat object with snake_case keys,
// tokens as strings and durations in seconds:
//
//	{"projection":"orders","owner":"host-1/0","checkpoint":"v2.…","head":"v2.…",
//	 "behind_events":12,"time_lag_seconds":3.5,"heartbeat_age_seconds":0.8,
//	 "horizon_age_seconds":0,"sla_seconds":2,"breached":true,"reason":"time_lag","at":"…"}
func (r Report) MarshalJSON() ([]byte, error) {
	return json.Marshal(reportJSON{
		Projection:      r.Name,
		Class:           r.Class,
		Owner:           r.Owner,
		Checkpoint:      r.Checkpoint,
		Head:            r.Head,
		BehindEvents:    r.PositionLag,
		TimeLagSeconds:  r.TimeLag.Seconds(),
		HeartbeatAgeSec: r.HeartbeatAge.Seconds(),
		HorizonAgeSec:   r.HorizonAge.Seconds(),
		SLASeconds:      r.SLA.Seconds(),
		Breached:        r.Breached,
		Reason:          r.Reason,
		At:              r.At,
	})
}

// UnmarshalJSON reads what MarshalJSON writes. Durations travel as float
// seconds: they come back exact to the nanosecond up to 2^51 ns (about 26
// days), and within 2 µs of what was written beyond, up to the
// longest time.Duration, which comes back as itself (an SLA that never
// breaches stays one).
func (r *Report) UnmarshalJSON(b []byte) error {
	var j reportJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*r = Report{
		Name:         j.Projection,
		Class:        j.Class,
		Owner:        j.Owner,
		Checkpoint:   j.Checkpoint,
		Head:         j.Head,
		PositionLag:  j.BehindEvents,
		TimeLag:      seconds(j.TimeLagSeconds),
		HeartbeatAge: seconds(j.HeartbeatAgeSec),
		HorizonAge:   seconds(j.HorizonAgeSec),
		SLA:          seconds(j.SLASeconds),
		Breached:     j.Breached,
		Reason:       j.Reason,
		At:           j.At,
	}
	return nil
}

// seconds converts float seconds to a Duration, saturating: the longest
// Duration's float form rounds up to 2^63 ns, which does not convert back.
func seconds(s float64) time.Duration {
	ns := math.Round(s * float64(time.Second))
	switch {
	case ns >= math.MaxInt64:
		return math.MaxInt64
	case ns <= math.MinInt64:
		return math.MinInt64
	}
	return time.Duration(ns)
}
