package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// TestSagasSharedIDNeedsTypeAndWaitZeroOnlyRecords: an instance id that
// two saga types share, given without --type, makes retry, cancel and show
// fail with an error that names --type and both types, and records no
// request; with --type and --wait 0, retry and cancel return at once (no
// engine runs here), say that the request is recorded, and leave it
// pending for that type alone. The id is random.
func TestSagasSharedIDNeedsTypeAndWaitZeroOnlyRecords(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 12))
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-_"
	id := ""
	for range 1 + rng.IntN(16) {
		id += string(alphabet[rng.IntN(len(alphabet))])
	}
	if rng.IntN(4) == 0 {
		id = "-" + id // one a shell user must pass after "--"
	}
	db, store := newJobsStore(t)
	// Two saga types start an instance with the same id from one event,
	// and both fail it for good, so a retry request is one they accept.
	var defs []saga.Definition
	for _, name := range []string{"jobs", "audits"} {
		s := saga.New[cliJob](name, nil)
		saga.StartOn(s, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
			func(*saga.Step[cliJob], cliJobStarted) error { return saga.Permanent(errBrokenJob) })
		defs = append(defs, s)
	}
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: defs, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	_, err = store.Append(ctx, "job-"+id, events.AnyVersion, events.Event{Data: cliJobStarted{ID: id}})
	require.NoError(t, err)
	handleStream(t, store, eng, "job-"+id)
	for _, typ := range []string{"jobs", "audits"} {
		tl, err := eng.Show(ctx, typ, id)
		require.NoError(t, err)
		require.Equal(t, saga.StatusFailed, tl.Info.Status, typ)
	}
	op, err := saga.NewOperator(&saga.OperatorConfig{Source: store})
	require.NoError(t, err)
	pending := func(typ string) (saga.Request, bool) {
		t.Helper()
		r, ok, err := op.Pending(ctx, typ, id)
		require.NoError(t, err)
		return r, ok
	}
	// args are a subcommand, the id, then flags. The id goes last, after
	// "--", as a user must write one that starts with '-'.
	sagas := func(args ...string) (string, error) {
		t.Helper()
		full := append([]string{"sagas", args[0]}, args[2:]...)
		full = append(full, "--database-url", db.URL, "--schema", db.Schema, "--", args[1])
		return runCLI(t, full...)
	}

	for _, args := range [][]string{
		{"retry", id, "--wait", "0"}, {"retry", id}, {"cancel", id, "--wait", "0"}, {"cancel", id, "--reason", "r"}, {"show", id},
	} {
		_, err := sagas(args...)
		require.ErrorContains(t, err, "--type", "%v names --type", args)
		require.ErrorContains(t, err, fmt.Sprintf("instance id %q exists in several saga types", id), args)
		require.ErrorContains(t, err, "jobs", args)
		require.ErrorContains(t, err, "audits", args)
		for _, typ := range []string{"jobs", "audits"} {
			_, ok := pending(typ)
			require.False(t, ok, "%v records no request for %s", args, typ)
		}
	}

	out, err := sagas("retry", id, "--type", "jobs", "--wait", "0")
	require.NoError(t, err, "--wait 0 does not wait for an engine")
	require.Equal(t, fmt.Sprintf("jobs/%s: request recorded; an engine running jobs carries it out\n", id), out)
	r, ok := pending("jobs")
	require.True(t, ok, "the retry request is pending")
	require.Equal(t, saga.OpRetry, r.Op)
	_, ok = pending("audits")
	require.False(t, ok, "no request for the other type")

	out, err = sagas("cancel", id, "--type", "audits", "--wait", "0", "--reason", "audit dropped")
	require.NoError(t, err)
	require.Equal(t, fmt.Sprintf("audits/%s: request recorded; an engine running audits carries it out\n", id), out)
	r, ok = pending("audits")
	require.True(t, ok, "the cancel request is pending")
	require.Equal(t, saga.OpCancel, r.Op)
	require.Equal(t, "audit dropped", r.Reason)
	r, ok = pending("jobs")
	require.True(t, ok)
	require.Equal(t, saga.OpRetry, r.Op, "the other type's request is untouched")
	for _, typ := range []string{"jobs", "audits"} {
		tl, err := eng.Show(ctx, typ, id)
		require.NoError(t, err)
		require.Equal(t, saga.StatusFailed, tl.Info.Status, "%s: only recorded, not carried out", typ)
	}

	// With --json, what --wait 0 prints is JSON too: the recorded request.
	for _, args := range [][]string{
		{"retry", id, "--type", "jobs", "--wait", "0", "--json"},
		{"cancel", id, "--type", "audits", "--wait", "0", "--json", "--reason", "dropped again"},
	} {
		out, err := sagas(args...)
		require.NoError(t, err)
		var got struct {
			Saga    string       `json:"saga"`
			ID      string       `json:"id"`
			Request saga.Request `json:"request"`
		}
		require.NoError(t, json.Unmarshal([]byte(out), &got), "%v prints JSON: %q", args, out)
		r, ok := pending(args[3])
		require.True(t, ok)
		require.Equal(t, args[3], got.Saga)
		require.Equal(t, id, got.ID)
		require.Equal(t, r.Op, got.Request.Op)
		require.Equal(t, r.Reason, got.Request.Reason)
	}
}

// TestSagasWaitDefaultsTo12s: retry and cancel wait up to 12s by default
// for an engine to carry their request out.
func TestSagasWaitDefaultsTo12s(t *testing.T) {
	t.Parallel()
	for _, sub := range []string{"retry", "cancel"} {
		cmd, _, err := newRootCmd().Find([]string{"sagas", sub})
		require.NoError(t, err)
		require.Equal(t, "sagas "+sub, cmd.Parent().Name()+" "+cmd.Name())
		f := cmd.Flag("wait")
		require.NotNil(t, f, "sagas %s has --wait", sub)
		require.Equal(t, "12s", f.DefValue, "sagas %s --wait defaults to 12s", sub)
	}
}
