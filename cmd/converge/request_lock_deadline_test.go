package main

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/projections"
)

// TestSagasRetryWaitIsBoundedWhileTheInstanceIsLocked: `converge sagas
// retry ID --wait 1s` returns within about --wait (exit status 4),
// saying the request may not have been recorded, also when another
// transaction (an engine stuck mid-step, a frozen process) holds the
// instance's row as the command records its request: the deadline runs
// from the start, not from the recording on.
func TestSagasRetryWaitIsBoundedWhileTheInstanceIsLocked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, _ := newFailedJob(t)

	// Another session holds the instance row, as an engine's unit does.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "SELECT 1 FROM "+pgx.Identifier{db.Schema, "rows"}.Sanitize()+
		" WHERE namespace = 'converge.saga' AND tbl = 'instances' AND key = 'jobs/bad' FOR UPDATE")
	require.NoError(t, err)
	released := make(chan struct{})
	t.Cleanup(func() { <-released })

	var cliErr error
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		_, cliErr = runCLI(t, "sagas", "retry", "bad", "--wait", "1s", "--database-url", db.URL, "--schema", db.Schema)
	}()
	select {
	case <-finished:
		_ = tx.Rollback(ctx)
		close(released)
		var te *timedOutError
		require.ErrorAs(t, cliErr, &te, "a wait that ran out exits 4; got %v after %s", cliErr, time.Since(start))
		require.ErrorContains(t, cliErr, "the request may not have been recorded")
	case <-time.After(15 * time.Second):
		_ = tx.Rollback(ctx)
		<-finished
		close(released)
		t.Fatalf("`sagas retry --wait 1s` was still running 15s later (it returned %v only once the lock was released)", cliErr)
	}
}

// TestProjectionsRebuildWaitIsBoundedWhileTheStateIsLocked: `converge
// projections rebuild NAME --wait --timeout 1s` ends within about
// --timeout (exit status 4), saying the request may not have been recorded, also
// when another transaction holds the projection's state row as the request
// is recorded.
func TestProjectionsRebuildWaitIsBoundedWhileTheStateIsLocked(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setupOps(t)
	b.broken.Store(false)
	r := b.start(t, projections.RunnerConfig{Projections: []*projections.Projection{b.projection("ops_locked")}})
	b.deposit(t, "a", 1)
	b.awaitCaughtUp(t, r, "ops_locked")
	stopRunner(t, r)
	schema := b.conn[len(b.conn)-1]

	conn, err := pgx.Connect(ctx, b.conn[1])
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	tx, err := conn.Begin(ctx)
	require.NoError(t, err)
	tag, err := tx.Exec(ctx, "SELECT 1 FROM "+pgx.Identifier{schema, "rows"}.Sanitize()+
		" WHERE namespace = 'converge' AND tbl = 'projections' AND key = 'ops_locked' FOR UPDATE")
	require.NoError(t, err)
	require.EqualValues(t, 1, tag.RowsAffected())

	var cliErr error
	finished := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(finished)
		_, cliErr = b.cli(t, "projections", "rebuild", "ops_locked", "--wait", "--timeout", "1s")
	}()
	select {
	case <-finished:
		_ = tx.Rollback(ctx)
		var te *timedOutError
		require.ErrorAs(t, cliErr, &te, "a wait that ran out exits 4; got %v after %s", cliErr, time.Since(start))
		require.ErrorContains(t, cliErr, "the request may not have been recorded")
	case <-time.After(15 * time.Second):
		_ = tx.Rollback(ctx)
		<-finished
		t.Fatalf("`projections rebuild --wait --timeout 1s` was still running 15s later (once the lock was released it returned: %v)", cliErr)
	}
}
