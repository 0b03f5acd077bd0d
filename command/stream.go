package command

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/converge-es/converge/events"
)

// StreamPrefix starts every command stream: commands are events of their
// own streams, so converge's feed is the outbox (the command commits with
// the step that sent it) and the transport (handlers read the command's
// category).
const StreamPrefix = "cmd."

// Metadata keys of commands, beside correlation_id (the sender's
// correlation, a saga's instance id) and causation_id (the message that
// caused the command).
const (
	// MetaCausalToken is the consistency token the sender had seen when it
	// sent the command (events.Token.String): a handler that reads read
	// models must not decide on ones behind it. It cannot wait for them
	// (see CausalToken); it can refuse to go on, so the command is
	// delivered again later.
	MetaCausalToken = "converge_causal_token"
	// MetaSender names what sent the command (a saga type). The command's
	// Rejected event carries it too: a rejection answers its sender
	// alone, and the saga engine delivers it to no other saga type.
	MetaSender = "converge_sender"
)

// Category returns the stream category of commands of the stored type
// name: a command handler subscribes to it.
func Category(commandType string) string { return StreamPrefix + commandType }

// StreamFor returns the stream a command of the stored type name is
// appended to for a correlation (the sender's instance id), in the type's
// category: category + "-" + correlation. A type or correlation with a
// "-" in it can share its stream with another pair ("pay" for
// "refund-1" and "pay-refund" for "1"), and a category with a "-" lies
// inside the category before it; that is harmless, as a handler takes
// only commands of its own type and skips the others it reads.
//
// A correlation that would make the stream id invalid (longer than
// events.MaxStreamIDLength bytes, as a saga instance id near its limit
// does, or holding a character stream ids refuse) is replaced by
// "#" and the first 32 hex digits of its SHA-256, so every correlation
// has a stream its commands can be appended to; the command still
// carries the correlation itself as its correlation id.
func StreamFor(commandType, correlation string) string {
	category := Category(commandType)
	if correlation == "" {
		return category
	}
	s := category + "-" + correlation
	if events.ValidateStreamID(s) != nil && events.ValidateStreamID(category) == nil {
		sum := sha256.Sum256([]byte(correlation))
		return category + "-#" + hex.EncodeToString(sum[:16])
	}
	return s
}

// MaxTypeNameLength is the longest stored command type name whose commands
// always have a stream: StreamFor's hashed form (category, "-#" and 32 hex
// digits) still fits events.MaxStreamIDLength.
const MaxTypeNameLength = events.MaxStreamIDLength - len(StreamPrefix) - 2 - 32

// CausalToken returns the consistency token a command carries
// (MetaCausalToken). False when the command carries none or it does not
// parse.
//
// A handler that reads read models should not decide on ones that have
// not reached it, but it cannot wait for them: the Processor delivers
// commands on a feed.Subscriber, which has no Gate, and a handler runs
// inside the delivery's unit of work, where consistency.Tracker.Wait
// refuses to wait (consistency.ErrWaitInUnit: a wait would hold the
// unit, and on PostgreSQL the feed, open). What it can do is look, and
// refuse: take the command's envelope from ctx (feed.EnvelopeFromMessage
// of cqrs.OriginalMessageFromCtx), read the read models' checkpoint
// positions through the unit (events.UnitFromContext gives a feed.Unit;
// feed.Unit.Positions), and when one is before the token, return an
// error (not a Reject) instead of deciding. The unit rolls back and the
// command is delivered again after the subscriber's Nack backoff
// (NackBackoffMin and NackBackoffMax of ProcessorConfig.Subscriber), the
// commands behind it in its partition waiting meanwhile, until the read
// models reach the token.
func CausalToken(env events.Envelope) (events.Token, bool) {
	s := env.Metadata.Extra[MetaCausalToken]
	if s == "" {
		return events.Token{}, false
	}
	tok, err := events.ParseToken(s)
	return tok, err == nil
}
