package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/saga"
)

// TestSagasShowIgnoredOnly: `converge sagas show` of an id that has no
// instance, but messages that were ignored for it, says that no instance
// has the id and lists those messages (of every saga type, or of --type's),
// and still fails with ErrNotFound's exit status 1. An id with neither
// fails as before, printing nothing.
func TestSagasShowIgnoredOnly(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store := newJobsStore(t)
	// Two saga types that both take job.checked for an existing instance
	// only (saga.On never starts one).
	var defs []saga.Definition
	for _, name := range []string{"jobs", "audits"} {
		s := saga.New[cliJob](name, nil)
		saga.StartOn(s, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
			func(*saga.Step[cliJob], cliJobStarted) error { return nil })
		saga.On(s, func(e cliJobChecked, _ events.Envelope) string { return e.ID },
			func(s *saga.Step[cliJob], _ cliJobChecked) error { s.Complete(); return nil })
		defs = append(defs, s)
	}
	clock := clocktest.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: defs, Clock: clock, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	res, err := store.Append(ctx, "job-ghost", events.AnyVersion, events.Event{Data: cliJobChecked{ID: "ghost"}})
	require.NoError(t, err)
	handleStream(t, store, eng, "job-ghost")
	eventID := res.EventIDs[0]

	show := func(t *testing.T, args ...string) (string, error) {
		t.Helper()
		out, err := runCLI(t, append(append([]string{"sagas", "show"}, args...), "--database-url", db.URL, "--schema", db.Schema)...)
		require.ErrorIs(t, err, saga.ErrNotFound)
		var ec interface{ ExitCode() int }
		require.False(t, errors.As(err, &ec), "not found exits with status 1, as before: %v", err)
		return out, err
	}

	t.Run("text", func(t *testing.T) {
		t.Parallel()
		out, err := show(t, "ghost")
		require.ErrorContains(t, err, `no saga instance has id "ghost"`)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		require.Len(t, lines, 5, out)
		require.Equal(t, `no saga instance has id "ghost"; messages correlated to it were ignored:`, lines[0])
		require.Equal(t, []string{"SAGA", "AT", "EVENT", "ID", "EVENT", "TYPE", "REASON"}, strings.Fields(lines[2]))
		for i, typ := range []string{"audits", "jobs"} {
			require.Equal(t, []string{typ, "2026-01-02T03:04:05.000Z", eventID, "job.checked", "no", "instance"}, strings.Fields(lines[3+i])[:6], out)
			require.Contains(t, lines[3+i], "saga.On, which never starts one", out)
		}
	})
	t.Run("text with --type", func(t *testing.T) {
		t.Parallel()
		out, err := show(t, "ghost", "--type", "jobs")
		require.ErrorContains(t, err, `no jobs instance has id "ghost"`)
		require.True(t, strings.HasPrefix(out, `no jobs instance has id "ghost"; messages correlated to it were ignored:`), out)
		require.Contains(t, out, "jobs  2026-01-02T03:04:05.000Z  "+eventID+"  job.checked  no instance with this id")
		require.NotContains(t, out, "audits")
	})

	type line struct {
		Saga     string                `json:"saga"`
		ID       string                `json:"id"`
		Instance *bool                 `json:"instance"`
		Ignored  []saga.IgnoredMessage `json:"ignored"`
	}
	decode := func(t *testing.T, out string) []string {
		t.Helper()
		var sagas []string
		for _, s := range strings.Split(strings.TrimSpace(out), "\n") {
			var l line
			require.NoError(t, json.Unmarshal([]byte(s), &l), out)
			require.NotNil(t, l.Instance, "says whether there is an instance: %s", s)
			require.False(t, *l.Instance)
			require.Equal(t, "ghost", l.ID)
			require.Len(t, l.Ignored, 1)
			require.Equal(t, eventID, l.Ignored[0].EventID)
			require.Equal(t, "job.checked", l.Ignored[0].EventType)
			require.True(t, l.Ignored[0].At.Equal(clock.Now()))
			require.Contains(t, l.Ignored[0].Reason, "no instance with this id")
			sagas = append(sagas, l.Saga)
		}
		return sagas
	}
	t.Run("json", func(t *testing.T) {
		t.Parallel()
		out, _ := show(t, "ghost", "--json")
		require.Equal(t, []string{"audits", "jobs"}, decode(t, out))
	})
	t.Run("json with --type", func(t *testing.T) {
		t.Parallel()
		out, _ := show(t, "ghost", "--json", "--type", "audits")
		require.Equal(t, []string{"audits"}, decode(t, out))
	})

	t.Run("unknown id", func(t *testing.T) {
		t.Parallel()
		// Nothing correlated to the id (in that saga type): it fails as
		// before, printing nothing.
		for _, args := range [][]string{{"nope"}, {"nope", "--json"}, {"nope", "--type", "jobs"}, {"ghost", "--type", "other"}} {
			out, _ := show(t, args...)
			require.Empty(t, out, "%v", args)
		}
		_, err := show(t, "nope")
		require.EqualError(t, err, "saga: instance not found: no saga instance has id \"nope\" (list them with `converge sagas list`)")
		_, err = show(t, "nope", "--type", "jobs")
		require.EqualError(t, err, "saga: instance not found: jobs/nope")
	})
}
