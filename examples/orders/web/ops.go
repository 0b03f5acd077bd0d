package web

import (
	"context"
	"errors"
	"time"

	"github.com/converge-es/converge/events"
)

// Ops is what the dashboard needs from the engine: saga instances, the
// operator's two actions on them, and dead letters. Lag does not come
// through Ops: the server samples it itself (LagHistory).
type Ops interface {
	// SagaCounts returns how many saga instances are in each status.
	SagaCounts(ctx context.Context) (map[string]int, error)
	// Sagas lists saga instances matching filter, most recently updated
	// first.
	Sagas(ctx context.Context, filter SagaFilter) ([]SagaSummary, error)
	// Saga returns one instance with its timeline, or ErrSagaNotFound.
	Saga(ctx context.Context, id string) (SagaDetail, error)
	// Retry asks a failed or stuck instance to try its current step again.
	Retry(ctx context.Context, id string) error
	// Cancel stops an instance at once (saga.Engine.Cancel): its timers,
	// parked step and queued messages are dropped and nothing of the saga
	// runs again. The fulfilment's OnCancel handler undoes, in the same
	// unit, what it asked for: the stock reservation and the charge (even
	// while their answers are on their way), and cancels the order.
	Cancel(ctx context.Context, id string) error
	// DeadLetters lists the messages consumers gave up on, oldest first.
	DeadLetters(ctx context.Context) ([]DeadLetter, error)
}

var (
	// ErrSagaNotFound is returned by Ops for an unknown instance id (404).
	ErrSagaNotFound = errors.New("web: no saga instance with this id")
	// ErrSagaConflict is returned by Retry and Cancel when the instance's
	// state does not allow the action, such as retrying a completed
	// instance (409).
	ErrSagaConflict = errors.New("web: the saga instance's state does not allow this action")
)

// SagaFilter selects saga instances.
type SagaFilter struct {
	// Status keeps instances in this status, one of the engine's (see
	// SagaSummary.Status); "" keeps all. GET /api/sagas refuses any other.
	Status string
	// Stuck keeps only instances flagged stuck.
	Stuck bool
	// Limit caps the result. Defaults to DefaultSagaLimit.
	Limit int
}

// DefaultSagaLimit is how many instances a dashboard list shows.
const DefaultSagaLimit = 50

// SagaSummary is one saga instance in a list.
type SagaSummary struct {
	ID string `json:"id"`
	// Type is the saga's stable name, such as "order_fulfilment".
	Type string `json:"type"`
	// Status is the engine's status name (package saga): "running",
	// "parked", "compensating", "completed", "failed" or "cancelled".
	Status string `json:"status"`
	// Step is the step the instance is at or failed in.
	Step string `json:"step,omitempty"`
	// Stuck is true when the instance has waited on its step longer than
	// the engine allows without failing (a parked step, a lagging read
	// model).
	Stuck bool `json:"stuck"`
	// Error is the last failure, for failed and stuck instances.
	Error     string    `json:"error,omitempty"`
	StartedAt time.Time `json:"started_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// SagaDetail is one instance with its timeline.
type SagaDetail struct {
	SagaSummary
	Timeline []TimelineEntry `json:"timeline"`
}

// TimelineEntry is one thing that happened to a saga instance.
type TimelineEntry struct {
	At time.Time `json:"at"`
	// Kind is what happened, such as "event", "command", "retry",
	// "timeout" or "compensation".
	Kind   string `json:"kind"`
	Step   string `json:"step,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// DeadLetter is a message a consumer gave up on.
type DeadLetter struct {
	ID string `json:"id"`
	// Consumer is the projection or saga that gave up.
	Consumer  string       `json:"consumer"`
	EventID   string       `json:"event_id"`
	EventType string       `json:"event_type"`
	StreamID  string       `json:"stream_id"`
	Position  events.Token `json:"position"`
	Reason    string       `json:"reason"`
	Attempts  int          `json:"attempts"`
	At        time.Time    `json:"at"`
}

// NoOps is an Ops with no sagas and no dead letters, for a domain without
// a saga engine. Embed it to implement only part of Ops.
type NoOps struct{}

var _ Ops = NoOps{}

// SagaCounts returns no counts.
func (NoOps) SagaCounts(context.Context) (map[string]int, error) { return map[string]int{}, nil }

// Sagas returns none.
func (NoOps) Sagas(context.Context, SagaFilter) ([]SagaSummary, error) { return nil, nil }

// Saga returns ErrSagaNotFound.
func (NoOps) Saga(context.Context, string) (SagaDetail, error) { return SagaDetail{}, ErrSagaNotFound }

// Retry returns ErrSagaNotFound.
func (NoOps) Retry(context.Context, string) error { return ErrSagaNotFound }

// Cancel returns ErrSagaNotFound.
func (NoOps) Cancel(context.Context, string) error { return ErrSagaNotFound }

// DeadLetters returns none.
func (NoOps) DeadLetters(context.Context) ([]DeadLetter, error) { return nil, nil }
