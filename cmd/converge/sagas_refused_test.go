package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// TestSagasRequestRefusedFailsTheCommand: a cancel request that the
// engine refuses (the instance was cancelled through the Go API before
// the engine's pass took the request) makes `sagas cancel --wait` fail,
// saying why, instead of exiting 0 as if it had been carried out.
func TestSagasRequestRefusedFailsTheCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store := newJobsStore(t)
	jobs := saga.New[cliJob]("jobs", nil)
	saga.StartOn(jobs, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
		func(*saga.Step[cliJob], cliJobStarted) error { return nil }, saga.Reads("audit"))
	tracker, err := consistency.NewTracker(nil)
	require.NoError(t, err)
	tracker.Advance("audit", events.Token{}) // never catches up: the step parks
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{jobs}, Tracker: tracker, GateTimeout: time.Millisecond})
	require.NoError(t, err)
	_, err = store.Append(ctx, "job-late", events.NoStream, events.Event{Data: cliJobStarted{ID: "late"}})
	require.NoError(t, err)
	handleStream(t, store, eng, "job-late")
	op, err := saga.NewOperator(&saga.OperatorConfig{Source: store})
	require.NoError(t, err)

	done := make(chan error, 1)
	go func() {
		_, err := runCLI(t, "sagas", "cancel", "late", "--wait", "30s", "--database-url", db.URL, "--schema", db.Schema)
		done <- err
	}()
	require.Eventually(t, func() bool {
		_, pending, err := op.Pending(ctx, "jobs", "late")
		return err == nil && pending
	}, 30*time.Second, 5*time.Millisecond, "the CLI never recorded its request")
	require.NoError(t, eng.Cancel(ctx, "jobs", "late", "by the API"))
	_, err = eng.RunParked(ctx)
	require.NoError(t, err)

	select {
	case err := <-done:
		require.ErrorContains(t, err, "refused")
		require.ErrorContains(t, err, "cancel request refused")
	case <-time.After(30 * time.Second):
		t.Fatal("the CLI did not return once the request was refused")
	}
}
