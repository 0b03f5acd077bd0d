package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// cliJobV2 is cliJob as a newer build stores it.
type cliJobV2 struct {
	Runs  int    `json:"runs"`
	Owner string `json:"owner"`
}

// TestSagasCancelSkipOnCancelAfterARollback: `converge sagas cancel` of an
// instance whose state a newer build stored, with only the older build
// running (a rollback), and a saga type with an OnCancel handler. Without
// --skip-on-cancel the request waits for the newer build: --wait runs out
// (exit status 4) and the message names --skip-on-cancel (not that the
// database did not answer, as a --wait that is a multiple of the poll
// interval made it say when its last poll began as the wait ran out).
// With it, the running engine ends the instance cancelled without the
// handler, and the command prints that the handler did not run. --help
// documents the flag.
func TestSagasCancelSkipOnCancelAfterARollback(t *testing.T) {
	t.Parallel()
	help, err := runCLI(t, "sagas", "cancel", "--help")
	require.NoError(t, err)
	require.Contains(t, help, "--skip-on-cancel")
	require.Contains(t, help, "without running the saga's OnCancel handler")

	ctx := context.Background()
	db, store := newJobsStore(t)
	byID := func(e cliJobStarted, _ events.Envelope) string { return e.ID }
	var ran atomic.Int32 // OnCancel handler runs, of either build

	newer := saga.New[cliJobV2]("jobs", &saga.Config[cliJobV2]{StateVersion: 2})
	saga.StartOn(newer, byID, func(s *saga.Step[cliJobV2], _ cliJobStarted) error { s.State().Runs++; return nil })
	saga.OnCancel(newer, func(*saga.Step[cliJobV2], saga.Cancelled) error { ran.Add(1); return nil })
	engNewer, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{newer}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	_, err = store.Append(ctx, "job-late", events.NoStream, events.Event{Data: cliJobStarted{ID: "late"}})
	require.NoError(t, err)
	handleStream(t, store, engNewer, "job-late")

	// Rolled back: only the older build runs, its driver carrying out
	// requests.
	older := saga.New[cliJob]("jobs", nil)
	saga.StartOn(older, byID, func(s *saga.Step[cliJob], _ cliJobStarted) error { s.State().Runs++; return nil })
	saga.OnCancel(older, func(*saga.Step[cliJob], saga.Cancelled) error { ran.Add(1); return nil })
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{older}, SweepInterval: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	require.NoError(t, eng.Start(ctx))
	t.Cleanup(func() { require.NoError(t, eng.Stop(context.Background())) })

	conn := []string{"--database-url", db.URL, "--schema", db.Schema}
	_, err = runCLI(t, append([]string{"sagas", "cancel", "late", "--reason", "rolled-back", "--wait", "3s"}, conn...)...)
	var te *timedOutError
	require.ErrorAs(t, err, &te, "the request waits for the newer build: exit status 4")
	require.ErrorContains(t, err, "cancel with --skip-on-cancel")
	op, err := saga.NewOperator(&saga.OperatorConfig{Source: store})
	require.NoError(t, err)
	tl, err := op.Show(ctx, "jobs", "late")
	require.NoError(t, err)
	require.Equal(t, saga.StatusRunning, tl.Info.Status)
	require.NotNil(t, tl.Request, "the request stays recorded")
	require.False(t, tl.Request.SkipOnCancel)

	out, err := runCLI(t, append([]string{"sagas", "cancel", "late", "--skip-on-cancel", "--reason", "rolled-back", "--wait", "30s"}, conn...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, "jobs/late: cancelled")
	require.Contains(t, out, "its OnCancel handler did not run")
	tl, err = op.Show(ctx, "jobs", "late")
	require.NoError(t, err)
	require.Equal(t, saga.StatusCancelled, tl.Info.Status)
	require.Equal(t, "rolled-back", tl.Info.Reason)
	require.Nil(t, tl.Request)
	require.Zero(t, ran.Load(), "no build ran the OnCancel handler")
}
