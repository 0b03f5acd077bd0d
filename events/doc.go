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
// (Token.String, "v1.…"; ParseToken reads it back) in HTTP headers and
// JSON; compare tokens with Compare, Before and After, never by computing
// with them.
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
package events
