// Package lag watches how far projections (feed consumers) are behind the
// event store and says when one breaks its SLA.
//
// A Monitor reads a feed.Inspector (*pgstore.Store or *memstore.Store) and,
// per projection, reports four numbers that answer different questions:
//
//   - Position lag: how many events lie between the projection's checkpoint
//     and the head of the feed. It says how much work is queued, not how
//     stale readers are: 10,000 events a busy projection clears in 200ms
//     matter less than one event stuck for a minute.
//   - Time lag: how long the oldest unprocessed event (the first one after
//     the checkpoint) has been waiting, or 0 when the projection is caught
//     up. This is the staleness a reader of the read model can observe,
//     and what the SLA is measured against.
//   - Heartbeat age: how long ago the projection's lease holder last
//     renewed its lease or committed. A live runner renews every third of
//     its lease TTL, so a growing heartbeat age means a stalled or dead
//     runner even while the time lag is still small.
//   - Horizon age: how long the oldest open transaction in the database has
//     been running. On PostgreSQL an event committed after such a
//     transaction began is not deliverable until it ends (see the pgstore
//     package doc), so a long transaction delays every projection at once.
//     It is the same for all projections; in memory it is how long the
//     oldest open unit that appended has held delivery back. A
//     transaction of a role the monitor's connection may not see in
//     pg_stat_activity (without pg_read_all_stats) is still counted, timed
//     from the first pass that found it holding the horizon.
//
// A projection split into partitions checkpoints under one name per
// partition (Target.Checkpoints): it is as far as its slowest partition,
// and the first three numbers are that partition's. A Target that names
// a processor and lists no Checkpoints gets its current partitions from
// the processor's record (feed.ProcessorPartitions), and a Monitor that
// watches every consumer reports each split processor once, under its
// name. The checkpoints an earlier partition count left behind (and the
// one a processor had before it was first split) no longer move; such a
// Monitor leaves them out instead of reporting them in breach for ever.
// Either way, named or listed, a current partition that has no checkpoint
// of its own yet stands at the slowest of the checkpoints the processor
// left behind, where it will start: a processor does not drop out of the
// listing while its new partitions fail to start, and is not reported at
// the start of the feed (in breach) while they have yet to run. When a
// partition of an earlier count left no checkpoint (it never ran), the
// feed seeds no new partition, and they stand at the start of the feed.
// It leaves out a projection rebuild's consumer ("orders@rebuild-3") too:
// the rebuild reads the feed from its start while readers use the live
// projection, which is what the Monitor reports.
//
// # Why time lag starts at the oldest unprocessed event
//
// The obvious measure, "now minus the time of the last processed event",
// is wrong both ways. A projection that is caught up on a quiet feed would
// show an ever-growing lag although nothing is waiting; and a projection
// that processed an event written a second ago but has a backlog behind it
// would look fresh. What a reader experiences is how long the events the
// read model does not yet reflect have existed, timed from the oldest of
// them: now - RecordedAt(oldest event after the checkpoint). In memory that
// is the first after it; on PostgreSQL the feed follows the appending
// transactions' ids, and one that took its id early and appended late puts
// a young event before older ones, so the store looks at the first
// pgstore.OldestScan events after the checkpoint and takes the oldest. It
// is 0 exactly when nothing is waiting. On PostgreSQL this includes events
// held back by the read horizon: they are committed, unprocessed and
// invisible to readers of the model, so their wait is lag too.
//
// # The breach rule
//
// A projection breaches its SLA when its time lag exceeds the SLA, or when
// it has unprocessed events and its heartbeat is older than
// Config.StaleHeartbeat (5s, the feed's lease TTL, by default): nobody is
// working the backlog off, so the SLA will go next. The Report's Reason
// says which rule fired. A caught-up projection never breaches, however old
// its heartbeat: an idle projection with no runner harms nobody.
//
// A breach fires Config.OnBreach once, logs a Warn line, sets
// converge_projection_sla_breached to 1 and counts one in
// converge_projection_sla_breaches_total; further passes while it lasts
// fire nothing. When the rule stops holding, Config.OnRecover fires once
// with the ended Breach, an Info line is logged and the gauge returns to 0.
//
// SLAs come from Config.Projections (UserFacingSLA, 2s, and AnalyticsSLA,
// 30s, are the usual two), else Config.DefaultSLA.
//
// # Metrics
//
// When Config.Registerer is set the Monitor registers, each labelled by
// projection:
//
//	converge_projection_position_lag_events     gauge
//	converge_projection_time_lag_seconds        gauge
//	converge_projection_heartbeat_age_seconds   gauge (0 when never seen)
//	converge_projection_sla_seconds             gauge
//	converge_projection_sla_breached            gauge, 0 or 1
//	converge_projection_sla_breaches_total      counter
//
// and converge_read_horizon_age_seconds (no label). Handler serves a
// registry over HTTP.
//
// # Usage
//
//	reg := prometheus.NewRegistry() // the Monitor's own (see Config.Registerer)
//	mon, err := lag.NewMonitor(store, &lag.Config{
//		Projections: []lag.Target{
//			{Name: "order_summary", SLA: lag.UserFacingSLA},
//			{Name: "sales_report", SLA: lag.AnalyticsSLA, Class: "analytics"},
//		},
//		Registerer: reg,
//		OnBreach:   func(b lag.Breach) { log.Printf("page someone: %s breaches its SLA", b.Report.Name) },
//	})
//	if err != nil {
//		return err
//	}
//	if err := mon.Start(ctx); err != nil {
//		return err
//	}
//	defer func() { _ = mon.Stop(context.Background()) }()
//	mux.Handle("/metrics", lag.Handler(reg))
//
// From a shell, `converge lag` prints the same reports once (or with
// --watch, repeatedly) as a table or as JSON lines.
package lag
