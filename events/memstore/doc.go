// Package memstore is the in-memory twin of the PostgreSQL event store: the
// same events.Store, feed.Source, feed.CheckpointWatcher and feed.Inspector
// semantics, with nothing to set up. Use it in unit tests, examples and single-process
// tools; it keeps everything in memory and loses it when the process exits.
//
// Both stores pass the same behavioural suite (events/eventstoretest), so
// code tested against memstore behaves the same on PostgreSQL: expected
// versions, atomic appends, idempotent retries and duplicate event ids, the
// bad-input contract, the global order and checkpoint leases all agree.
//
//	reg := events.NewRegistry()
//	events.Register[OrderPlaced](reg, "order_placed")
//	store, err := memstore.New(&memstore.Config{Registry: reg})
//	if err != nil {
//		return err
//	}
//	defer store.Close()
//	res, err := store.Append(ctx, "order-42", events.NoStream,
//		events.Event{Data: OrderPlaced{OrderID: "42"}})
//
// Units of work (feed.CheckpointStore.Begin) behave as PostgreSQL
// transactions do for everything converge promises. An append through a
// unit reserves its versions and tokens at once and holds the events until
// the unit commits; a rollback (a Nacked delivery) discards them. Until the
// unit ends, its first reserved token holds every feed reader back, as an
// open transaction holds PostgreSQL's read horizon: a later append commits
// but is not readable yet (Batch.Pending reports it), so no reader passes
// an event that may still commit, and HorizonAge reports how long. Another
// append to a stream the unit appended to is judged on the committed
// events, as on PostgreSQL (see events.Unit): it fails at once when they
// do not meet its expected version, and otherwise waits for the unit to
// end and is judged again on what it left. Rows
// written through the unit are seen by the unit and by nobody else until
// the commit. Where PostgreSQL makes a second unit wait on a row lock,
// memory lets it run and fails its commit with feed.ErrConflict, in both
// orders: a unit holding a row with LockUpdate also conflicts when a unit
// that held it with LockShare committed after the update lock was taken
// (FOR UPDATE would have waited for it and seen its commit); an event
// id another open unit reserved counts as taken (ErrDuplicateEvent) rather
// than waiting, and fails the unit, as the unique violation aborts a
// PostgreSQL transaction once the holder commits (if the holder rolls
// back, PostgreSQL's waiting append goes through, where memory's was
// refused: append again after a refusal); a duplicate of a committed event is refused
// before anything is written and leaves the unit usable, on both stores.
// Once an append has failed the unit that way, every call on it but
// Rollback fails, saying why, as statements in an aborted PostgreSQL
// transaction do. A deadlock between units (each waiting for a stream the
// other holds) is detected, as PostgreSQL detects it: the append that
// would close the cycle fails at once with feed.ErrConflict, and that unit
// can only roll back. An append cannot fail
// half-way, so memory never reports events.ErrOutcomeUnknown.
//
// A feed read filtered by types or categories visits their events only:
// the store lists each type's and each category root's committed events
// (the root is the stream id up to its first "-", pgstore's category
// column), as PostgreSQL indexes them, so the read costs about what it
// returns rather than the length of the log it passes, also behind an open
// unit. A read held back by an open unit that returns no events reports
// Batch.Pending whenever a committed event after its cursor sits behind the
// reservation, matching its filter or not, as pgstore does: a filtered
// reader moves its checkpoint past unmatched events, so those it cannot
// read yet are pending for it too. A category with a "-" reads its root's events,
// and partitions are tested event by event. A read without types or
// categories walks the log and stops at its limit.
//
// Other differences: there is no AppendTx (there is no transaction to
// pass); a plain append outside a unit is readable the moment it returns
// unless a unit that appended before it is still open (its reservation
// holds readers back until it ends, as above), where on PostgreSQL any
// open transaction holding a transaction id can delay it; and Wake is
// always fed by push.
//
// Global tokens are MakeToken(seq, seq) for a 1-based sequence; a
// rolled-back unit leaves its seqs unused. Like every token they are
// opaque: compare them, never compute them.
package memstore
