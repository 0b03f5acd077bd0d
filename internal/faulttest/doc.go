// Package faulttest injects faults into converge running as separate
// processes, and checks afterwards that nothing was lost or doubled. It is
// the harness behind the fault tests of projections and sagas here, and is
// meant for any later workload that runs on the feed.
//
// The pieces are independent; a workload combines them:
//
//   - Cluster is a throw-away PostgreSQL cluster (initdb and pg_ctl from
//     /usr/lib/postgresql/*/bin, or $CONVERGE_PG_BIN) in a temporary
//     directory, on a free port of 127.0.0.1. It never touches the shared
//     server on 5432. Stop, Start and Restart take a ShutdownMode: fast
//     (clients are disconnected, open transactions roll back) or
//     immediate (every server process dies; the next start recovers from
//     the WAL). initdb refuses root, so under root (CI) the server runs as
//     the operating-system user postgres.
//   - Process is a worker process: the test binary itself, re-executed
//     with RoleEnv set, running a Role that Main dispatches to from
//     TestMain. Kill sends SIGKILL (no deferred code, no Close, open
//     transactions and leases left behind), Start brings it back, Stop
//     sends SIGTERM and reports a failed exit (a race found under -race
//     exits with 66). A worker tells the test what happens inside it with
//     Worker.Report; its stderr goes to a log whose tail is printed when
//     the test fails.
//   - Writer appends while faults happen and knows which appends are
//     stored. An error from an append may hide a commit (the reply was
//     lost), so the writer retries the same events with the same ids until
//     an attempt succeeds or is refused as a duplicate, which proves an
//     earlier one committed. Retrying with fresh ids would double events.
//   - RunChaos kills a random worker every few seconds (it comes back
//     shortly after) and restarts the cluster at planned times.
//   - CheckAppends (every confirmed append stored exactly once, nothing
//     doubled by a logical key), AwaitCheckpoints (the consumers' checkpoints
//     reach the head) and Diff (a read model equals its recomputation from
//     the events) are the invariants.
//   - FailoverMeter times failovers from the workers' lease reports.
//
// A workload registers its worker roles in TestMain, before anything else
// runs (the re-executed binary runs the role and exits there), as this
// package's own TestMain does for its workloads:
//
//	func TestMain(m *testing.M) {
//		// Worker processes are this binary, re-executed: they run their role
//		// and exit here.
//		faulttest.Main(map[string]faulttest.Role{
//			projectionWorkerRole: projectionWorker,
//			sagaWorkerRole:       sagaWorker,
//			idleRole:             idle,
//		})
//		goleak.VerifyTestMain(m,
//			// pgxpool's background health check ends shortly after Close.
//			goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
//		)
//	}
//
// and its test starts a Cluster, migrates it, starts the Processes and a
// Writer, runs RunChaos, stops the Writer, waits with AwaitCheckpoints and
// checks with CheckAppends and Diff. projection_test.go is the complete
// example: three workers running a projection that sums amounts per
// account, using only the projections package's public API, so it keeps
// working whatever the internals become. saga_test.go is the second
// workload: three workers run, through converge.NewClient, a checkout saga
// (OrderPlaced sends ReserveStock, StockReserved sends ChargeCard,
// CardCharged completes it) and its two command handlers, partitioned by
// correlation; after the chaos the workers run on until every placed
// order's checkout has completed, and the test checks each completed once
// and each command and effect is stored exactly once per order, counted by
// type and order so that a resend under a fresh id would show.
//
// # Running
//
// The projection and saga workloads each run for 20 seconds of faults, in
// parallel (under a minute in all), in every `go test ./...`. Longer runs:
// -faults.long (10 minutes), -faults.duration 3m or
// CONVERGE_FAULTS_DURATION=3m; raise go test's -timeout (10m by default)
// to match:
//
//	go test ./internal/faulttest -run SurviveFaults -faults.long -timeout 30m -v
//
// (-run SagasSurviveFaults or ProjectionsSurviveFaults runs one of them.)
//
// -faults.lease-ttl sets the workers' feed LeaseTTL and
// -faults.idle-tx-timeout their idle_in_transaction_session_timeout.
// TestFailoverTime, which runs only with -faults.failover N, measures how
// long delivery stops after kill -9 of the lease holder, or, with
// -faults.freeze, after freezing it (SIGSTOP) that long:
//
//	go test ./internal/faulttest -run FailoverTime -faults.failover 8 -faults.lease-ttl 5s -v
//	go test ./internal/faulttest -run FailoverTime -faults.failover 4 -faults.freeze 8s -v
//
// The tests need the PostgreSQL server binaries (the postgresql package on
// Debian; scripts/test installs it) and, under root, a user named postgres.
// Without them they fail and say so rather than skip.
package faulttest
