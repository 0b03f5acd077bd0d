package main

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// TestSagasShowPurgedInstance: `converge sagas show` of an instance whose
// history retention purged still shows it, and says so.
func TestSagasShowPurgedInstance(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store := newJobsStore(t)
	jobs := saga.New[cliJob]("jobs", nil)
	saga.StartOn(jobs, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
		func(s *saga.Step[cliJob], _ cliJobStarted) error { s.Complete(); return nil })
	clock := clocktest.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{jobs}, Clock: clock})
	require.NoError(t, err)

	_, err = store.Append(ctx, "job", events.AnyVersion, events.Event{Data: cliJobStarted{ID: "done"}})
	require.NoError(t, err)
	handleStream(t, store, eng, "job")
	clock.Advance(saga.DefaultRetention + time.Hour)
	n, err := eng.PurgeEnded(ctx)
	require.NoError(t, err)
	require.Equal(t, 1, n)

	out, err := runCLI(t, "sagas", "show", "done", "--database-url", db.URL, "--schema", db.Schema)
	require.NoError(t, err)
	require.Contains(t, out, "jobs/done  status completed")
	require.Contains(t, out, "ended 2026-01-02T03:04:05Z")
	require.Contains(t, out, "purged by retention")
	require.Contains(t, out, saga.KindPurged)
}
