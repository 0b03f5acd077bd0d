package main

import (
	"context"
	"log/slog"
	"regexp"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// TestSagasRetryWaitReportsTheOutcome: `converge sagas retry ID --wait D`,
// with an engine running the saga type, waits until the engine took the
// request and prints the instance's outcome as one line, "TYPE/ID: STATUS
// (last: KIND: DETAIL)". The retried step is held inside its handler until
// the command has returned, so the outcome it reports is known: the
// instance is parked for its retry, and the last entry of its history is
// the operator's retry, with the time of the request.
func TestSagasRetryWaitReportsTheOutcome(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store := newJobsStore(t)

	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var runs atomic.Int32
	jobs := saga.New[cliJob]("jobs", nil)
	saga.StartOn(jobs, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
		func(s *saga.Step[cliJob], _ cliJobStarted) error {
			s.State().Runs++
			if runs.Add(1) == 1 {
				return saga.Permanent(errBrokenJob)
			}
			entered <- struct{}{}
			<-release // the retried step: held until the command returned
			return nil
		})
	eng, err := saga.NewEngine(&saga.EngineConfig{
		Store: store, Sagas: []saga.Definition{jobs},
		SweepInterval: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	_, err = store.Append(ctx, "job-bad", events.AnyVersion, events.Event{Data: cliJobStarted{ID: "bad"}})
	require.NoError(t, err)
	handleStream(t, store, eng, "job-bad")
	tl, err := eng.Show(ctx, "jobs", "bad")
	require.NoError(t, err)
	require.Equal(t, saga.StatusFailed, tl.Info.Status)

	require.NoError(t, eng.Start(ctx))
	released := false
	t.Cleanup(func() {
		if !released {
			close(release)
		}
		require.NoError(t, eng.Stop(context.Background()))
	})

	before := time.Now().Add(-time.Second).Truncate(time.Second)
	out, err := runCLI(t, "sagas", "retry", "bad", "--wait", "20s", "--database-url", db.URL, "--schema", db.Schema)
	require.NoError(t, err, out)
	after := time.Now().Add(time.Second)
	m := regexp.MustCompile(`^jobs/bad: parked \(last: retried: retried by an operator \(requested (\S+)\)\)\n$`).FindStringSubmatch(out)
	require.NotNil(t, m, "the outcome line, exactly: %q", out)
	at, err := time.Parse(time.RFC3339, m[1])
	require.NoError(t, err)
	require.False(t, at.Before(before) || at.After(after), "the request time %s is the command's (between %s and %s)", at, before, after)

	// The engine carries the retried step out once it is let go.
	select {
	case <-entered:
	case <-time.After(30 * time.Second):
		t.Fatal("the engine did not run the retried step")
	}
	close(release)
	released = true
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		tl, err := eng.Show(ctx, "jobs", "bad")
		require.NoError(c, err)
		assert.Equal(c, saga.StatusRunning, tl.Info.Status)
		assert.EqualValues(c, 1, tl.Info.Steps)
	}, 30*time.Second, 5*time.Millisecond)
}

// TestSagasRetryWaitZeroOnlyRecords: with --wait 0, `converge sagas retry`
// (here with the type found from the id alone) records the request,
// prints that it did on standard output, prints nothing on standard error
// and exits 0 without waiting for an engine (none runs here).
func TestSagasRetryWaitZeroOnlyRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store := newJobsStore(t)
	jobs := saga.New[cliJob]("jobs", nil)
	saga.StartOn(jobs, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
		func(*saga.Step[cliJob], cliJobStarted) error { return saga.Permanent(errBrokenJob) })
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{jobs}, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	_, err = store.Append(ctx, "job-bad", events.AnyVersion, events.Event{Data: cliJobStarted{ID: "bad"}})
	require.NoError(t, err)
	handleStream(t, store, eng, "job-bad")

	stdout, stderr, status := runMain(t, "sagas", "retry", "bad", "--wait", "0", "--database-url", db.URL, "--schema", db.Schema)
	require.Zero(t, status, "stderr: %s", stderr)
	require.Empty(t, stderr)
	require.Equal(t, "jobs/bad: request recorded; an engine running jobs carries it out\n", stdout)

	op, err := saga.NewOperator(&saga.OperatorConfig{Source: store})
	require.NoError(t, err)
	r, pending, err := op.Pending(ctx, "jobs", "bad")
	require.NoError(t, err)
	require.True(t, pending, "the request is recorded")
	require.Equal(t, saga.OpRetry, r.Op)
	tl, err := eng.Show(ctx, "jobs", "bad")
	require.NoError(t, err)
	require.Equal(t, saga.StatusFailed, tl.Info.Status, "only recorded, not carried out")
}
