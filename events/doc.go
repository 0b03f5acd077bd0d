// Package events holds converge's core types: events and their envelopes,
// streams with expected versions, consistency tokens, the type Registry with
// upcasters, the Store interface both stores implement (memstore, pgstore),
// and the aggregate helpers Load and Update.
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
// before any SQL runs, identically in memory and on PostgreSQL; and what is
// accepted is stored and read back as given (payloads equal by EqualJSON,
// metadata exactly). Refused: stream ids and type names that are empty, too
// long (MaxStreamIDLength, MaxTypeNameLength), not UTF-8, or hold control
// characters (category Cc, C1 controls such as U+0085 included) or the
// separators U+2028 and U+2029; schema versions outside 0 to
// MaxSchemaVersion (0 means 1); payloads that are not one JSON document, or
// hold NUL, lone surrogates, numbers outside float64's range or with more
// than MaxNumberScale decimals, or repeated keys (see ValidatePayload);
// metadata strings with NUL or invalid UTF-8; too many events or too large
// payloads (Limits); negative expected versions, Exactly(n) with n < 0
// included; and reads from a negative stream version.
//
// # Tokens
//
// A Token is a position in the global order. Its string form (format v2,
// prefix "v2.") is opaque, URL- and header-safe, and sorts byte-wise in
// feed order, so clients may compare token strings without parsing them.
package events
