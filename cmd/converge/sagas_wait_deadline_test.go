package main

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
)

// TestSagasRetryWaitHasADeadlineWhenTheDatabaseStalls: `converge sagas
// retry ID --wait 1s` waits at most --wait for an engine, and exits 4
// when the wait runs out, also when the database stops answering its
// polls (a session holds a lock on the rows table): the timed-out error
// says the database did not answer, and that the request stays recorded.
func TestSagasRetryWaitHasADeadlineWhenTheDatabaseStalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store := newFailedJob(t)

	var cliErr error
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		_, cliErr = runCLI(t, "sagas", "retry", "bad", "--wait", "1s", "--database-url", db.URL, "--schema", db.Schema)
	}()
	t.Cleanup(func() { <-finished })
	op, err := saga.NewOperator(&saga.OperatorConfig{Source: store})
	require.NoError(t, err)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		_, pending, err := op.Pending(ctx, "jobs", "bad")
		require.NoError(c, err)
		assert.True(c, pending)
	}, 10*time.Second, 5*time.Millisecond, "the command records its request")

	// The database stops answering the command's reads.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{db.Schema, "rows"}.Sanitize()+" IN ACCESS EXCLUSIVE MODE")
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })

	select {
	case <-finished:
		var te *timedOutError
		require.ErrorAs(t, cliErr, &te, "a wait that ran out exits 4")
		require.ErrorContains(t, cliErr, "the database did not answer within 1s")
		require.ErrorContains(t, cliErr, "the request stays recorded")
	case <-time.After(10 * time.Second):
		t.Fatal("`sagas retry --wait 1s` still waits 10s later: its wait has no deadline once the database stops answering")
	}
}

// newFailedJob stores jobs/bad, an instance its first step failed, for
// retry to be asked of, and returns its database and store.
func newFailedJob(t *testing.T) (*pgtest.DB, *pgstore.Store) {
	t.Helper()
	db, store := newJobsStore(t)
	jobs := saga.New[cliJob]("jobs", nil)
	saga.StartOn(jobs, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
		func(*saga.Step[cliJob], cliJobStarted) error { return saga.Permanent(errBrokenJob) })
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{jobs}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	_, err = store.Append(t.Context(), "job-bad", events.AnyVersion, events.Event{Data: cliJobStarted{ID: "bad"}})
	require.NoError(t, err)
	handleStream(t, store, eng, "job-bad")
	return db, store
}
