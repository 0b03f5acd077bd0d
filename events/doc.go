// Package events is converge's event store: the types every store shares
// and the contract they keep.
//
// # Streams
//
// Events are stored in streams, one per entity ("order-42"). A stream's
// events are numbered from 1 without gaps; its version is the number of
// events in it (0 for a stream that does not exist). An Event is a value of
// a Go type registered in a Registry under a stable name, or a Raw event;
// the name, not the Go type, is what is stored, so Go types can be renamed
// freely (see Registry for renaming a stored name). Readers get Envelopes:
// the event as stored, with its stream version, global Token, metadata and
// time.
//
// # Optimistic concurrency
//
// Every Store.Append states what the stream must look like for the write to
// go ahead, an ExpectedVersion:
//
//   - Exactly(n): the stream is at version n, i.e. nobody has written since
//     the writer read version n. This is how a decision based on state
//     cannot be lost to a concurrent one. Exactly(0) is NoStream.
//   - NoStream: the stream has no events yet (creating an entity).
//   - StreamExists: the stream has at least one event.
//   - AnyVersion: no check; for streams whose events do not depend on what
//     came before.
//
// When the expectation fails, nothing is written and Append returns a
// *WrongExpectedVersionError (errors.Is ErrWrongExpectedVersion) carrying
// the stream's actual version: reload, decide again, append again. Update
// does exactly that for an Aggregate, and Load replays a stream into state.
// An append is atomic: all of its events are stored or none is.
//
// # The global order and tokens
//
// Besides its place in its stream, every event has a place in one global
// order across all streams, and ReadAll reads it. That order is gap-free as
// readers see it: an event appears only once every event before it is
// visible, so a reader that has processed up to a position never later
// finds an earlier event it skipped (on PostgreSQL, where concurrent
// transactions commit in any order, this takes care; the pgstore package
// doc explains how).
//
// A Token is a position in that order. Every append returns the token of
// its last event, and every read model records the token it has processed
// up to: a read model at or past a write's token reflects that write. This
// is converge's consistency token. It travels as an opaque string
// (Token.String, "v2.…"; ParseToken reads it back) in HTTP headers and
// JSON; compare tokens with Compare, Before and After, or compare their
// strings, which sort in the same order; never compute with them.
//
// # The feed
//
// Package feed turns the global order into Watermill messages: a
// Subscriber delivers every event in order to a handler and moves a durable
// checkpoint in the same unit of work as the handler's writes, which is how
// projections stay exactly as far as their checkpoint says; a Publisher
// appends Watermill messages as events.
//
// # The two stores
//
// Two stores implement Store and the feed's interfaces, and pass the same
// behavioural suite (events/eventstoretest), so code tested against one
// behaves the same on the other:
//
//   - pgstore: PostgreSQL, for production. Appends can join the caller's
//     transaction (AppendTx), and a projection's writes commit with its
//     checkpoint. Needs the tables `converge migrate` creates.
//   - memstore: in memory, nothing to set up, for tests, examples and the
//     demo. Everything is lost when the process exits.
//
// The Example shows appends, a concurrency conflict, the global order, and
// reading what came after a token.
//
// # The append outcome contract
//
// An append's outcome is never ambiguous to its caller:
//
//   - Event ids are fixed before the first attempt: the caller's, or ones
//     the store generates once per call (AssignIDs fixes them up front for
//     callers that retry across calls).
//   - Appending events that are already stored (the same ids, stream,
//     positions and content) is idempotent: it returns the original
//     AppendResult (with AlreadyStored set) and writes nothing, whether the retry states AnyVersion
//     or the Exactly(n) of the first attempt. Reusing an id for anything
//     else fails with ErrDuplicateEvent (see MatchStored for the rule).
//   - Transient failures wrap ErrUnavailable; nothing was written. A failure
//     after which the append may have committed (the reply was lost, or the
//     context ended mid-commit) is an *OutcomeUnknownError
//     (ErrOutcomeUnknown): append the same events again to learn the outcome.
//   - pgstore.Store.Append retries transient failures itself, within its
//     configured bound, so its caller sees one success or one clear error;
//     pgstore.Store.AppendTx leaves the retry to the caller, who owns the
//     commit.
//
// # The bad-input contract
//
// Both stores call Prepare before anything else, so bad input is refused
// with ErrInvalidEvent (or ErrUnknownType for an unregistered Go type)
// before any SQL runs, identically in memory and on PostgreSQL, also when
// the context is done already (only a closed store, or an ended Unit, is
// reported first); and what is accepted is stored and read back as given
// (payloads equal by EqualJSON, metadata exactly). Refused: stream ids and
// type names that are empty, too long (MaxStreamIDLength,
// MaxTypeNameLength), not UTF-8, or hold control characters (category Cc,
// C1 controls such as U+0085 included) or the separators U+2028 and
// U+2029; schema versions outside 0 to MaxSchemaVersion (0 means 1);
// payloads that are not one JSON document, or hold NUL, lone surrogates,
// numbers outside float64's range or with more than MaxNumberScale
// decimals, or repeated keys (see ValidatePayload); metadata strings with
// NUL or invalid UTF-8; metadata setting the key AppliedMarksKey, which
// only converge's append hooks write (CheckReserved: the projections it
// names would skip the event); too many events or too large payloads
// (Limits, which counts a payload as PostgreSQL gives it back, numbers
// written out in full: see PayloadReadBackSize); negative expected versions, Exactly(n) with n < 0 included;
// reads from a negative stream version; and feed filters whose categories
// or type names are empty, not UTF-8 or hold NUL (feed.Filter.Validate).
//
// # Token strings
//
// A token's string form (format v2, prefix "v2.") is opaque, URL- and
// header-safe, and sorts byte-wise in feed order: a.Before(b) exactly when
// a.String() < b.String(), so clients may keep the greatest token string
// they have seen without parsing it. Format v1 did not sort that way and is
// refused with ErrTokenVersion.
package events
