// Package converge is the entry point of a converge application: one
// Client runs its read models (projections), its sagas and its command
// handlers on one store, with the consistency.Tracker that makes every
// read and every saga decision wait for the events that led to it.
//
//	client, err := converge.NewClient(store, &converge.Config{
//		Projections: []*projections.Projection{orderSummary},
//		Sagas:       []saga.Definition{fulfilment},
//		Commands:    []cqrs.CommandHandler{reserveStock, chargePayment},
//	})
//	if err != nil {
//		return err
//	}
//	if err := client.Start(ctx); err != nil {
//		return err
//	}
//	defer func() { _ = client.Stop(context.WithoutCancel(ctx)) }()
//
// (ExampleNewClient runs this with an order status read model, a
// fulfilment saga and its two command handlers; the package's Example is
// a smaller shop.) The store is a *memstore.Store or a *pgstore.Store; the
// same definitions run on either, and nothing in an application branches
// on which (tests run in memory, production on PostgreSQL).
//
// # What the client owns
//
//   - A consistency.Tracker wired to the store's checkpoint watcher and
//     positions (Client.Tracker): wait on it with a write's token.
//   - A projections.Runner for Config.Projections (Client.Projections):
//     views, status, resume, rebuild. Client.Appender applies the strong
//     projections in each append's own unit of work.
//   - A saga.Engine for Config.Sagas (Client.Sagas: List, Show, Retry,
//     Cancel, Metrics) on a feed.Processor partitioned by correlation id,
//     whose gate waits with the Tracker for the read models a step reads
//     before the step's unit of work begins. The Tracker knows the
//     processor's position under Config.SagaProcessor, as the lowest of
//     its partitions' checkpoints (consistency.Tracker.Group).
//   - A command.Processor for Config.Commands, on Watermill's cqrs
//     command processor over the feed.
//   - A lag.Monitor (Client.Lag) watching every projection against its
//     declared SLA, and the saga processor and the command handlers
//     (against SagaLagSLA and CommandLagSLA).
//
// Sagas and command handlers run on one Watermill router
// (Config.Router, or one the client creates with middleware.Recoverer),
// so the router's middleware applies to all of them. Projections run on
// the runner's own router with Config.ProjectionMiddleware.
//
// # Lifecycle
//
// Start starts everything and returns once the router runs; it does not
// block. Stop drains: the router waits for the handlers in flight, whose
// messages are given up (their units roll back, and the next holder
// delivers them again: effects through units stay exactly once), and
// releases the sagas' and command handlers' leases, then the
// engine's timer and parked-step loops end, the projections stop and
// release theirs, so another process running the same Config takes the
// work over at once (the leave is announced; at its next membership
// heartbeat, a third of the lease TTL by default, should the announcement
// be lost) rather than after a whole lease TTL. A client starts once;
// create a new one to run again.
//
// Two processes running the same Config split the saga partitions
// between them, and each runs every projection and command handler under
// a lease, so exactly one process applies each event.
package converge
