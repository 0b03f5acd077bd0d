// Package bench holds the scenarios behind `converge bench`. Every scenario
// measures converge and a baseline in the same run, on the same machine, and
// reports the ratio: absolute figures on a shared 2-core machine mean little,
// ratios measured side by side do.
//
// Each scenario writes one JSON line per measurement, and every line names
// its baseline and carries the baseline's figure and the ratio, oriented so
// that higher is better:
//
//   - append: "baseline" is "raw_insert" (pgx INSERTs of the same rows at
//     the same concurrency); ratio = events_per_sec / baseline_per_sec.
//   - propagation: "baseline" is "poll_50ms" (a per-request loop reading the
//     checkpoint every 50 ms, measured first in the run); ratio =
//     baseline_p99_ms / p99_ms, so the push line's ratio says how many times
//     sooner than that loop its slowest 1% of waiters are woken.
//   - command: "baseline" is "watermill_sql" (commands published with
//     watermill-sql's publisher on the sending step's transaction and
//     consumed with its subscriber at its default 1s poll, measured first);
//     ratio = baseline_p50_ms / p50_ms for the time from the step's commit
//     to the command handler's start in another process.
//   - parallel: "baseline" is the first partition count's run; ratio =
//     events_per_sec / baseline_per_sec.
//   - saga: one line per store, memory first and PostgreSQL last. In memory
//     "baseline" is "gochannel_router" (a Watermill router's rate of a
//     no-op handler on gochannel, messages/s); on PostgreSQL it is
//     "raw_commit" (single-row INSERT commits/s at the same concurrency);
//     ratio = sagas_per_sec / baseline_per_sec.
//
// The Write*Summary functions render the results as the short table
// `converge bench` prints after the JSON lines.
package bench
