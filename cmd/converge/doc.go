// Command converge operates a converge installation: it migrates the
// PostgreSQL schema, runs the demo, serves the order workflow with its page
// and dashboard, measures, and reports lag.
//
//	converge demo                                   # 200 orders through the fulfilment saga, in memory
//	converge demo --database-url $DATABASE_URL      # the same on PostgreSQL, in a fresh schema
//	converge migrate --database-url postgres://postgres@127.0.0.1:5432/app
//	converge migrate --status --schema orders        # exit status 3: pending
//	converge --version
//	converge lag --sla 2s                           # projections against their SLAs
//	converge projections status [NAME...] [--json]  # generation, position, halts, rebuild, lease
//	converge projections resume NAME                # clear a halt everywhere
//	converge projections rebuild|reset NAME --wait  # carried out by the running application
//	converge dead-letters list [--processor NAME]   # events processors gave up on
//	converge dead-letters replay ID... --wait       # applied again by the running processor
//	converge sagas list --status failed             # saga instances by type, status, parked time
//	converge sagas show ID [--type T] [--json]      # an instance's timeline, or why its id's messages did nothing
//	converge serve --demo-load 5                    # API, page, dashboard, /metrics, /lag, /healthz
//	converge bench --scenario append|propagation    # ratios against a baseline
//
// Every command that uses PostgreSQL connects to --database-url, else to
// the DATABASE_URL environment variable, and fails saying so when neither
// is set: converge never falls back to libpq's default database. The libpq
// environment variables (PGPASSWORD, PGSSLMODE, ...) fill in what the URL
// leaves out. Commands work on the tables in --schema ("converge" by
// default).
//
// Rebuild, reset and replay need handlers that only the application has:
// the commands record a request in the schema's rows, which a running
// projections.Runner or feed.Processor carries out, and report it
// accepted; --wait waits for the outcome, up to --timeout (exit status 4
// when it runs out; the request stays). The deadline runs from the start.
// Recording takes a row's lock, which a unit running or a stalled process
// may hold: it gets --timeout (--wait for sagas retry and cancel), 5s at
// least, then exits 4 saying the request may not be recorded (a deadline
// that ends the wait for the commit's reply leaves it unknown; running
// the command again is safe). --timeout without --wait is
// refused, as are the demo's --keep and --schema, and serve's --schema,
// without PostgreSQL: a flag that would change nothing is an error, not
// ignored.
//
// `converge sagas show ID` of an id with no instance fails with exit status
// 1; when messages correlated to the id were ignored for want of an
// instance (a saga.On handler's event, a timer fired for a vanished
// instance), it first says that no instance has the id and lists them
// (time, event id, event type, reason) for every saga type, or --type's.
//
// The list commands' name filters say so when a name is unknown rather
// than list nothing: `converge sagas list --type T` of a saga type with no
// instance in the schema, and `converge dead-letters list --processor P` of
// a processor the schema holds nothing of (no record, checkpoint or dead
// letter), fail with exit status 1, print nothing on standard output, and
// name the stored ones, as `converge projections status NAME` and
// `converge lag NAME` do. A known name whose other filters match nothing
// lists nothing, with exit status 0. A filter given an empty value
// (--processor, --type, --status, also --schema and a reset's --to) is
// refused rather than read as no filter, and so is a name given twice to
// a command that takes several.
//
// # Adding a command
//
// Each command lives in its own file as a struct holding its options, with
// a validate method and a run method, built by a newXCmd constructor
// (see migrate.go). Register the constructor by appending it to
// subcommands in root.go; that is the only place commands are added.
// A command that needs the database calls dbOptionsFrom(cmd) and then
// openPool, which fails with a message naming the fix when PostgreSQL
// cannot be reached.
package main
