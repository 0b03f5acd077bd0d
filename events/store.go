package events

import "context"

// Store is an append-only event store with optimistic concurrency and a
// gap-free global order. pgstore.Store and memstore.Store implement it and
// pass the same behavioural suite (eventstoretest).
type Store interface {
	// Append appends events atomically to one stream if the stream meets
	// expected, and returns where they landed. Either every event is stored
	// or none is.
	Append(ctx context.Context, streamID string, expected ExpectedVersion, evs ...Event) (AppendResult, error)
	// ReadStream returns up to limit events of one stream with version >=
	// fromVersion, oldest first. limit <= 0 means no limit. Nothing to
	// return (a stream without events, or a version past its end) is an
	// empty slice, never nil, so it encodes to JSON as [].
	ReadStream(ctx context.Context, streamID string, fromVersion int64, limit int) ([]Envelope, error)
	// StreamVersion returns the stream's version: 0 when it has no events.
	StreamVersion(ctx context.Context, streamID string) (int64, error)
	// ReadAll returns up to limit events strictly after the token, in global
	// order. It never skips an event that commits later: events appear only
	// once every event before them is visible. limit <= 0 means a default.
	// Nothing to return is an empty slice, never nil.
	ReadAll(ctx context.Context, after Token, limit int) ([]Envelope, error)
	// Head returns the token of the newest committed event (the zero token
	// for an empty store). It measures (lag, progress); it is no place to
	// start reading from: an append still open when Head answered may
	// commit later with a token below it, and a ReadAll after Head would
	// never show that event. Start from the zero token or a stored
	// checkpoint.
	Head(ctx context.Context) (Token, error)
	// Registry returns the type registry the store encodes with.
	Registry() *Registry
}

// AppendResult says where an append landed.
type AppendResult struct {
	StreamID string
	// FirstVersion and LastVersion are the stream versions of the first and
	// last appended event. Append again with Exactly(LastVersion).
	FirstVersion int64
	LastVersion  int64
	// Token is the global position of the last appended event: hand it to
	// readers so they wait for read models that reflect this write.
	Token Token
	// EventIDs are the ids of the appended events, in order.
	EventIDs []string
	// Tokens are the global positions of the appended events, in order;
	// the last one equals Token.
	Tokens []Token
	// AlreadyStored is true when this append repeated one that had stored
	// the same events (a retry): the other fields describe where they were
	// stored, and this call wrote nothing. Code that acts once per stored
	// event, in the transaction that stores it (applies it inline, say),
	// skips such a result: the first append's transaction did it. It is
	// false when a store's own retry finds the events its earlier attempt
	// may have stored.
	AlreadyStored bool
}
