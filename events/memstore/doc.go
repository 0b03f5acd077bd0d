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
// Differences from PostgreSQL, all deliberate: there are no transactions to
// compose writes with (no AppendTx, and feed.Unit covers only the
// checkpoint), an append is readable the moment it returns (feed.Batch.Pending
// is always false), Wake is always fed by push, and an append cannot fail
// half-way, so it never reports events.ErrOutcomeUnknown.
//
// Global tokens are MakeToken(seq, seq) for a 1-based sequence. Like every
// token they are opaque: compare them, never compute them.
package memstore
