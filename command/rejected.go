package command

import (
	"errors"
	"fmt"

	"github.com/converge-es/converge/events"
)

// RejectedType is the stored type name of Rejected.
const RejectedType = "converge.command.rejected"

// Rejected is the event a rejected command becomes. It is appended to
// StreamFor(RejectedType, correlation) with the command's correlation id,
// the command id as causation id and, when the command names its sender
// (MetaSender), the same sender.
type Rejected struct {
	// CommandID is the id of the rejected command (its event id).
	CommandID string `json:"command_id"`
	// Type is the command's stored type name.
	Type string `json:"type"`
	// Reason is what the decision said, or why the store refused what it
	// decided, or why the command does not decode, as free text is
	// stored: NUL and invalid UTF-8 as U+FFFD, cut at 4 KiB (or shorter,
	// where the event would not fit the store's Limits.MaxPayloadBytes),
	// and "no reason given" for an empty one.
	Reason string `json:"reason"`
}

// Register registers Rejected in reg; a registry that already has it is
// left alone.
func Register(reg *events.Registry) error {
	if name, _, err := reg.NameOf(Rejected{}); err == nil {
		if name != RejectedType {
			return fmt.Errorf("command: command.Rejected is registered as %q, want %q", name, RejectedType)
		}
		return nil
	}
	return events.RegisterSafely[Rejected](reg, RejectedType, 1)
}

// ErrRejected is matched by every *RejectedError.
var ErrRejected = errors.New("command rejected")

// RejectedError is a decision's refusal of a command: a business outcome,
// not a failure. Return it with Reject.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string { return "command rejected: " + e.Reason }

// Is makes errors.Is(err, ErrRejected) true.
func (e *RejectedError) Is(target error) bool { return target == ErrRejected }

// Reject returns the error a decision returns to refuse a command. Any
// reason can be given: it is stored as Rejected.Reason says.
func Reject(reason string) error { return &RejectedError{Reason: reason} }
