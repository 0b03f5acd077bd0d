package projections

import (
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// State is whether a projection generation is applying events.
type State string

const (
	// StateRunning: events are applied as they arrive.
	StateRunning State = "running"
	// StateHalted: an event failed RunnerConfig.MaxAttempts times under
	// the Halt policy. Nothing is applied until Resume; the checkpoint
	// stays before the failing event.
	StateHalted State = "halted"
)

// Status is what Runner.Status reports about one projection.
type Status struct {
	Name  string
	Class consistency.Class
	// Generation is the generation readers read.
	Generation int
	// State is the live processor's state.
	State State
	// HaltedReason and HaltedEventID say why and where it halted.
	HaltedReason  string
	HaltedEventID string
	// Checkpoint is the live processor's position (the lowest of its
	// partitions'): the read model reflects every event up to it.
	Checkpoint events.Token
	// Applied is the active generation's position. A generation's progress
	// is recorded once, as its processor's checkpoint, so it equals
	// Checkpoint.
	Applied events.Token
	// Rebuild is set while a rebuild runs beside the live generation.
	Rebuild *RebuildStatus
	// Consumer is how this runner's live consumer of the projection fares:
	// holding the feed lease (delivering here), standing by (another
	// process delivers), or degraded (the store unreachable since a time,
	// with the last error); its String says so in one line. State above is
	// the projection's state in the store, shared by every process, and
	// does not change while the database is down; Consumer does.
	Consumer feed.ConsumerStatus
}

// RebuildStatus describes a rebuild in progress.
type RebuildStatus struct {
	Generation    int
	State         State
	HaltedReason  string
	HaltedEventID string
	// Checkpoint is the rebuild's processor's position.
	Checkpoint events.Token
	// Applied equals Checkpoint (see Status.Applied).
	Applied events.Token
}
