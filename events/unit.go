package events

import (
	"context"
	"errors"
)

// Unit is a unit of work: the appends made through it, and everything else
// it holds (read-model rows, a consumer's checkpoint, a saga step's state),
// take effect together when it commits, or not at all.
//
// A handler fed by converge's runtime (a projection, a saga step, a command
// handler) finds its unit in its context with UnitFromContext, and
// events.Update joins it by itself. The same code runs on both stores:
//
//   - On PostgreSQL the unit is one transaction, begun at its first use.
//     Append runs inside it (pgstore.Store.AppendTx), so the events it
//     wrote hold the stream's next versions until the unit ends.
//     pgstore.TxFromContext is the typed escape hatch to the pgx.Tx.
//   - In memory, Append reserves the events' versions and tokens at once
//     and holds the events until the unit commits; a rollback (a Nacked
//     delivery) discards them. Until the unit ends, its reserved tokens hold
//     the feed back for every reader, as an open transaction holds
//     PostgreSQL's read horizon.
//
// Another append to a stream the unit appended to (a plain Append, or
// one in another unit) follows one rule on both stores. Its expected
// version is judged against the committed events, and its own unit's if
// it is in one, never against the open unit's. When they do not meet it,
// it fails at once with a WrongExpectedVersionError reporting the
// committed version, even if the open unit will leave the stream where it
// expects it (Exactly of the unit's last version, StreamExists on a
// stream the unit created). When they do meet it, its events would take
// the versions the open unit holds, so it waits for the unit to end and
// is judged again on what the unit left: after a commit it lands if the
// stream still meets its expectation (AnyVersion, say) and fails
// otherwise, and after a rollback it lands where the unit's events would
// have gone. The judgement is made when the append runs, so an append
// racing the unit's commit may see it or not: either outcome is a valid
// answer of optimistic concurrency (reload and append again after a
// conflict).
//
// In both stores the AppendResult of an append in a unit is final (versions,
// ids and tokens) but becomes real only if the unit commits; hand its token
// to readers from an AfterCommit hook. ReadStream and StreamVersion through
// the unit see its own appends; ReadAll and Head see committed events only.
//
// A Unit is used by one goroutine at a time, and only until it ends: calls
// after the commit or rollback fail with ErrUnitEnded, whatever their
// arguments (bad input included) and on both stores.
type Unit interface {
	Store
	// AfterCommit registers fn to run once the unit has committed, in
	// registration order, on the committing goroutine. It is not run when
	// the unit rolls back. fn must not block. On a feed.Unit the hooks run
	// before the commit's checkpoint moves are announced in this process
	// (feed.CheckpointWatcher, and through it consistency.Tracker): a
	// reader that waited for a move finds what the hooks did done.
	AfterCommit(fn func())
}

// ErrUnitEnded is returned by a Unit used after it committed or rolled back
// (a handler that kept its context, or its unit, past its return).
var ErrUnitEnded = errors.New("the unit of work has ended (use it only while the handler that received it runs)")

type unitKey struct{}

// ContextWithUnit returns ctx carrying u. Stores and the runtime call it;
// applications receive contexts that already carry their unit. A nil u
// hides the unit ctx carries: for work that must not join it, such as a
// wait before the unit's first use.
func ContextWithUnit(ctx context.Context, u Unit) context.Context {
	return context.WithValue(ctx, unitKey{}, u)
}

// UnitFromContext returns the unit of work ctx carries: inside a handler
// run by converge's runtime, the handler's unit.
func UnitFromContext(ctx context.Context) (Unit, bool) {
	u, ok := ctx.Value(unitKey{}).(Unit)
	return u, ok && u != nil
}

// storeFor returns the unit ctx carries when it belongs to the same store
// as s (they share a Registry), else s: Load and Update read and write
// through the caller's unit, so their writes commit with it.
func storeFor(ctx context.Context, s Store) Store {
	if u, ok := UnitFromContext(ctx); ok && (s == nil || u.Registry() == s.Registry()) {
		return u
	}
	return s
}
