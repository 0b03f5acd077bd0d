// Package projections builds read models from the event feed, with the
// guarantee converge is about: a read model knows exactly how far it got,
// so a reader holding a consistency token can wait for it, and every
// event's effect lands in it exactly once.
//
// # Definitions
//
// A projection is defined in Go, once, and runs unchanged on PostgreSQL and
// in memory: a stable name, typed handlers for the event types it handles,
// and a consistency class.
//
//	summary := projections.New("order_summary", &projections.Config{
//		Description: "order totals per customer", // SLA defaults to 2s
//	})
//	projections.On(summary, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e OrderPlaced) error {
//		customers := tx.Table("customers")
//		total, _, err := projections.Get[int](ctx, customers, e.Customer)
//		if err != nil {
//			return err
//		}
//		return customers.Put(ctx, e.Customer, total+e.Total)
//	})
//
//	runner, err := projections.NewRunner(&projections.RunnerConfig{
//		Source:      store, // a *pgstore.Store or a *memstore.Store
//		Projections: []*projections.Projection{summary},
//		Tracker:     tracker, // optional: advanced after every commit
//		Catalog:     catalog, // optional: every projection's class and SLA
//	})
//	err = runner.Start(ctx)
//	defer runner.Stop(ctx)
//
//	// Readers always read the active generation.
//	total, ok, err := projections.Get[int](ctx, runner.View("order_summary").Table("customers"), "ada")
//
// The handled type's stored name comes from the store's events.Registry,
// so a Go type can be renamed freely while its registered name stays. The
// projection's name is stored too (rows, checkpoint, Tracker entry):
// renaming a projection starts an empty one that replays the feed.
//
// Read models are tables of JSON values by string key (Tx.Table, View),
// stored in the read_models table on PostgreSQL (migration 0002) and in
// memory next to a memstore. Handlers that need SQL can use Tx.Pgx, which
// is the same transaction.
//
// # Classes
//
// consistency.Eventual projections (the default) are fed by the global feed
// through a Watermill router: one handler per projection, with its own
// feed.Subscriber whose consumer name is the projection's name. Readers who
// need their own write wait on the write's token (consistency.Tracker),
// which the runner advances under the same name.
//
// consistency.Strong projections are also applied inside the append's own
// transaction when the events are appended through Runner.Appender, an
// events.Store: a read right after the append sees them, with no wait. Their
// feed consumer still runs; it moves their checkpoint, skips the events the
// Appender applied, and applies events appended any other way (so append
// everything a strong projection handles through an Appender).
//
// # Exactly-once effect
//
// Delivery is at least once; effects are exactly once. On PostgreSQL a
// handler's writes, the projection's watermark and the feed checkpoint
// commit in one transaction (pgstore.TxFromContext), fenced by the
// consumer's lease: a crash before the commit leaves nothing, and the event
// comes again. Each generation also keeps a watermark, the token of the
// last event applied, written with the rows: an event at or before it is
// skipped. That makes a replayed prefix (a checkpoint moved back) and a
// duplicated delivery (Watermill's middleware.Duplicator, a redelivery
// after a lost Ack) harmless. In memory, a handler's writes are staged and
// applied with the watermark, under one lock, when the handler returns; the
// checkpoint follows, and a redelivery after a crash in between is skipped
// by the watermark.
//
// Handlers must still be deterministic functions of the read model and the
// event, and must not have side effects outside the Tx: those would happen
// again on a retry.
//
// # Failures: retries, halts and dead letters
//
// A handler's error (or panic) discards everything it wrote and the event
// is tried again after an exponential backoff (BackoffMin to BackoffMax).
// Events of one projection are applied one at a time in global order, so
// a failing event holds up the events behind it. After MaxAttempts the
// failure policy applies:
//
//   - HaltOnFailure (the default) halts the projection: its checkpoint stays
//     before the event, Status reports StateHalted with the reason, OnHalt is
//     called, and nothing is attempted (no hot loop) until Resume. Readers
//     keep reading the last good state.
//   - DeadLetterOnFailure stores the event and the reason in the dead
//     letters (Runner.DeadLetters) in the same unit of work that moves the
//     checkpoint past it, and carries on.
//
// Halts are stored, so a projection halted by one process is halted in all
// of them, and a Resume in one reaches the others within
// StatusPollInterval.
//
// Status.Consumer says how this process's consumer of a projection fares:
// "holding lease" (it delivers), "standing by" (another process does), or
// "degraded since <time>: <error>" while the database is unreachable. It
// needs no database, so Status returns it even when reading the stored
// state fails. Lease changes are reported to the OnLeaseChange of
// RunnerConfig.Subscriber as they happen.
//
// # Rebuild and reset
//
// Runner.Rebuild replays the whole feed into the next generation, beside
// the active one, under its own consumer, while readers keep reading the
// active generation and its live consumer keeps it current. When the new
// generation reflects everything the active one does (and at least the feed
// as it was when the rebuild started), it becomes active in one
// transaction, and the old generation's rows are dropped. Readers see the
// old rows or the new ones, never neither. Use it after changing a
// handler, or to recover from bad rows or dead-lettered events.
//
// Runner.Reset moves a projection's checkpoint and watermark back to a
// token, so the events after it are applied again over the current rows.
// It is for upsert-style handlers (a row holds the latest state of
// something), and readers see rows step back through older states while it
// replays; for anything else use Rebuild.
//
// # On PostgreSQL
//
// While a feed handler runs, its transaction holds the feed's read horizon
// back for every consumer in the cluster (see pgstore): keep handlers
// short, and never wait inside one. The tables live in the store's schema;
// run `converge migrate` (migration 0002) first.
package projections
