package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
)

type cliJobStarted struct {
	ID string `json:"id"`
}

type cliJobChecked struct {
	ID string `json:"id"`
}

type cliJob struct {
	Runs int `json:"runs"`
}

// TestSagasCommand runs an engine in this process, as an application
// would, and operates on its instances with `converge sagas`, which knows
// none of the definitions: list and show read the rows, and retry and
// cancel are carried out by the running engine.
func TestSagasCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store := newJobsStore(t)

	var healthy atomic.Bool
	jobs := saga.New[cliJob]("jobs", nil)
	saga.StartOn(jobs, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
		func(s *saga.Step[cliJob], e cliJobStarted) error {
			s.State().Runs++
			if e.ID == "bad" && !healthy.Load() {
				return saga.Permanent(errBrokenJob)
			}
			return nil
		})
	saga.On(jobs, func(e cliJobChecked, _ events.Envelope) string { return e.ID },
		func(s *saga.Step[cliJob], _ cliJobChecked) error { s.Complete(); return nil },
		saga.Reads("audit"))
	tracker, err := consistency.NewTracker(nil)
	require.NoError(t, err)
	tracker.Advance("audit", events.Token{}) // never catches up
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{jobs}, Tracker: tracker, SweepInterval: 50 * time.Millisecond, GateTimeout: time.Millisecond})
	require.NoError(t, err)
	proc, err := feed.NewProcessor(store, &feed.ProcessorConfig{
		Name: "sagas", Types: eng.Types(), Handles: eng.Handles(), Partitions: 2, PartitionKey: eng.PartitionKey(),
		Gate: eng.Gate, Waiter: tracker, GateTimeout: time.Millisecond,
	}, eng.Handle)
	require.NoError(t, err)
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	require.NoError(t, proc.AddHandlers(router))
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- router.Run(rctx) }()
	<-router.Running()
	require.NoError(t, eng.Start(ctx))
	t.Cleanup(func() {
		cancel()
		require.NoError(t, router.Close())
		require.NoError(t, <-done)
		require.NoError(t, proc.Close())
		require.NoError(t, eng.Stop(context.Background()))
	})

	var checked events.AppendResult
	for _, e := range []any{cliJobStarted{ID: "ok"}, cliJobStarted{ID: "bad"}, cliJobStarted{ID: "waits"}, cliJobChecked{ID: "waits"}} {
		checked, err = store.Append(ctx, "job", events.AnyVersion, events.Event{Data: e})
		require.NoError(t, err)
	}
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		failed, err := eng.List(ctx, saga.Filter{Status: saga.StatusFailed})
		require.NoError(c, err)
		parked, err := eng.List(ctx, saga.Filter{Status: saga.StatusParked})
		require.NoError(c, err)
		assert.Len(c, failed, 1, "failed")
		assert.Len(c, parked, 1, "parked")
	}, 30*time.Second, 5*time.Millisecond)

	conn := []string{"--database-url", db.URL, "--schema", db.Schema}
	sagas := func(args ...string) (string, error) {
		return runCLI(t, append(append([]string{"sagas"}, args...), conn...)...)
	}

	out, err := sagas("list", "--json")
	require.NoError(t, err)
	var all []saga.Info
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var in saga.Info
		require.NoError(t, json.Unmarshal([]byte(line), &in), line)
		all = append(all, in)
	}
	require.Len(t, all, 3)

	out, err = sagas("list", "--status", "failed")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	require.Equal(t, []string{"jobs", "bad", "failed"}, strings.Fields(lines[1])[:3])
	require.Contains(t, lines[1], "broken job")

	out, err = sagas("list", "--stuck-for", "1ns", "--json")
	require.NoError(t, err)
	var stuck saga.Info
	require.NoError(t, json.Unmarshal([]byte(out), &stuck), out)
	require.Equal(t, "waits", stuck.ID)
	require.Equal(t, []string{"audit"}, stuck.Waiting)
	require.Equal(t, checked.Token, stuck.WaitToken, "the step waits for its event's token")
	require.Equal(t, "job.checked", stuck.ParkedType)
	require.Equal(t, checked.EventIDs[0], stuck.ParkedEvent)
	out, err = sagas("list", "--stuck-for", "1h")
	require.NoError(t, err)
	require.Len(t, strings.Split(strings.TrimSpace(out), "\n"), 1, "only the header")

	out, err = sagas("show", "waits")
	require.NoError(t, err)
	require.Contains(t, out, "jobs/waits  status parked")
	require.Contains(t, out, "parked")
	require.Contains(t, out, "models=audit")
	require.Contains(t, out, fmt.Sprintf(" on job.checked %s, waiting for audit to reach %s (stuck: ", checked.EventIDs[0], checked.Token),
		"show says which event's step waits and for which token")
	out, err = sagas("show", "bad", "--json")
	require.NoError(t, err)
	var tl saga.Timeline
	require.NoError(t, json.Unmarshal([]byte(out), &tl))
	require.Equal(t, saga.StatusFailed, tl.Info.Status)
	require.Equal(t, saga.KindFailed, tl.History[len(tl.History)-1].Kind)

	_, err = sagas("show", "nope")
	require.ErrorIs(t, err, saga.ErrNotFound)
	_, err = sagas("retry", "ok")
	require.ErrorIs(t, err, saga.ErrNotRetryable)
	_, err = sagas("list", "--status", "sleeping")
	require.ErrorContains(t, err, "use one of running")

	// The CLI records the request; the running engine carries it out.
	healthy.Store(true)
	out, err = sagas("retry", "bad", "--wait", "20s")
	require.NoError(t, err)
	require.Contains(t, out, "jobs/bad:")
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		tl, err := eng.Show(ctx, "jobs", "bad")
		require.NoError(c, err)
		assert.Equal(c, saga.StatusRunning, tl.Info.Status)
		assert.EqualValues(c, 1, tl.Info.Steps)
	}, 30*time.Second, 5*time.Millisecond)
	require.Contains(t, kindsOf(t, eng, "bad"), saga.KindRetried)

	out, err = sagas("cancel", "waits", "--reason", "audit is gone", "--wait", "20s")
	require.NoError(t, err)
	require.Contains(t, out, "jobs/waits: cancelled")
	tl, err = eng.Show(ctx, "jobs", "waits")
	require.NoError(t, err)
	require.Equal(t, "audit is gone", tl.Info.Reason)
	_, err = sagas("cancel", "waits")
	require.ErrorIs(t, err, saga.ErrEnded)
}

// newJobsStore returns a fresh schema and a store on it that knows the
// job events.
func newJobsStore(t *testing.T) (*pgtest.DB, *pgstore.Store) {
	t.Helper()
	db := pgtest.New(t, nil)
	reg := events.NewRegistry()
	require.NoError(t, events.RegisterSafely[cliJobStarted](reg, "job.started", 1))
	require.NoError(t, events.RegisterSafely[cliJobChecked](reg, "job.checked", 1))
	store, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	return db, store
}

// handleStream has eng take the stream's events, one unit each, as its
// processor would.
func handleStream(t *testing.T, store *pgstore.Store, eng *saga.Engine, stream string) {
	t.Helper()
	ctx := context.Background()
	envs, err := store.ReadStream(ctx, stream, 0, 0)
	require.NoError(t, err)
	require.NotEmpty(t, envs)
	for _, env := range envs {
		u, err := store.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, eng.Handle(u.Context(events.ContextWithUnit(ctx, u)), env))
		require.NoError(t, u.Commit(ctx))
	}
}

var errBrokenJob = errorString("broken job")

type errorString string

func (e errorString) Error() string { return string(e) }

func kindsOf(t *testing.T, eng *saga.Engine, id string) []string {
	t.Helper()
	tl, err := eng.Show(context.Background(), "jobs", id)
	require.NoError(t, err)
	var out []string
	for _, h := range tl.History {
		out = append(out, h.Kind)
	}
	return out
}

// TestSagasRetryWaitRunsOut: with no engine running the saga type, retry
// and cancel record their request, and a --wait that runs out exits with
// status 4, as projections and dead-letters do; the request stays.
func TestSagasRetryWaitRunsOut(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store := newJobsStore(t)
	jobs := saga.New[cliJob]("jobs", nil)
	saga.StartOn(jobs, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
		func(*saga.Step[cliJob], cliJobStarted) error { return saga.Permanent(errBrokenJob) })
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{jobs}})
	require.NoError(t, err)
	// One step each, run by hand in a unit: no engine is left running.
	for _, id := range []string{"bad", "bad2"} {
		res, err := store.Append(ctx, "job-"+id, events.AnyVersion, events.Event{Data: cliJobStarted{ID: id}})
		require.NoError(t, err)
		envs, err := store.ReadStream(ctx, "job-"+id, res.LastVersion, 1)
		require.NoError(t, err)
		u, err := store.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		err = eng.Handle(u.Context(events.ContextWithUnit(ctx, u)), envs[0])
		if err == nil {
			err = u.Commit(ctx)
		}
		if err != nil {
			_ = u.Rollback(ctx)
		}
		require.NoError(t, err)
	}

	conn := []string{"--database-url", db.URL, "--schema", db.Schema}
	for _, args := range [][]string{{"retry", "bad"}, {"cancel", "bad2"}} {
		// The wait counts from the start, the recording's time included:
		// long enough for a loaded database to record the request.
		_, err = runCLI(t, append(append([]string{"sagas"}, args...), append(conn, "--wait", "2s")...)...)
		require.ErrorContains(t, err, "no engine running saga type jobs took the request within 2s")
		var ec interface{ ExitCode() int }
		require.ErrorAs(t, err, &ec)
		require.Equal(t, 4, ec.ExitCode(), args)
	}
	op, err := saga.NewOperator(&saga.OperatorConfig{Source: store})
	require.NoError(t, err)
	for _, id := range []string{"bad", "bad2"} {
		_, pending, err := op.Pending(ctx, "jobs", id)
		require.NoError(t, err)
		require.True(t, pending, "the request for %s stays recorded", id)
	}
	// A cancel while the retry waits would replace it: refused.
	_, err = runCLI(t, append([]string{"sagas", "cancel", "bad"}, conn...)...)
	require.ErrorIs(t, err, saga.ErrRequestPending)
}

// TestSagasCommandsTakeOneID: show, retry and cancel with no id or several
// say what they take and where to find ids.
func TestSagasCommandsTakeOneID(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"show", "retry", "cancel"} {
		for _, ids := range [][]string{nil, {"a", "b"}} {
			_, err := runCLI(t, append([]string{"sagas", sub}, ids...)...)
			require.ErrorContains(t, err, fmt.Sprintf("converge sagas %s takes one instance id, got %d (list them with `converge sagas list`)", sub, len(ids)))
		}
	}
}

// newCLIStore returns a store on a fresh schema and the flags that point
// the CLI at it.
func newCLIStore(t *testing.T) (store *pgstore.Store, conn []string) {
	t.Helper()
	db := pgtest.New(t, nil)
	store, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	return store, []string{"--database-url", db.URL, "--schema", db.Schema}
}
