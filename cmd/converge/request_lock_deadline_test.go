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
// retry ID --wait 1s` ends (exit status 4, saying the request may not
// have been recorded) once its recording has had the 5 s it gets at
// least, also when another transaction (an engine stuck mid-step, a
// frozen process) holds the instance's row: it used to wait for as long
// as the row was held.
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
	case <-time.After(30 * time.Second):
		_ = tx.Rollback(ctx)
		<-finished
		close(released)
		t.Fatalf("`sagas retry --wait 1s` was still running 30s later (it returned %v only once the lock was released)", cliErr)
	}
}

// TestProjectionsRebuildWaitIsBoundedWhileTheStateIsLocked: `converge
// projections rebuild NAME --wait --timeout 1s` ends (exit status 4,
// saying the request may not have been recorded) once its recording has
// had the 5 s it gets at least, also when another transaction holds the
// projection's state row.
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
	case <-time.After(30 * time.Second):
		_ = tx.Rollback(ctx)
		<-finished
		t.Fatalf("`projections rebuild --wait --timeout 1s` was still running 30s later (once the lock was released it returned: %v)", cliErr)
	}
}
