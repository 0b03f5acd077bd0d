package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// refusedNames are filter values no stored name matches: typos, names no
// saga type or processor can have, and names with SQL and LIKE
// metacharacters and quotes, which must be refused as names, never read
// as SQL or as patterns (job_ and jobs% would match jobs as LIKE
// patterns, and j* as a glob).
var refusedNames = []string{
	"ordr", "job", "job_", "jobs%", "j*", "%", "_", "Jobs", "jobs/", "jobs ", "jobs'", `jobs"`,
	"jobs'; DROP TABLE events; --", `"jobs"`, `jobs\`, "ops_letter_", "ops%", "ops_letters/", strings.Repeat("x", 300),
}

// refusedOnce runs converge with args as a process and requires that it
// failed with exit status 1 and one line on standard error starting with
// "converge: "+want, having printed nothing on standard output; it
// returns that line.
func refusedOnce(t *testing.T, want string, args ...string) string {
	t.Helper()
	stdout, stderr, status := runMain(t, args...)
	require.Equal(t, 1, status, "%q: %s", args, stderr)
	require.Empty(t, stdout, "%q: a refusal prints nothing on standard output", args)
	require.True(t, strings.HasPrefix(stderr, "converge: "+want), "%q: %s", args, stderr)
	require.Equal(t, 1, strings.Count(stderr, "\n"), "%q: one line: %s", args, stderr)
	return stderr
}

// TestSagasListRefusesAnUnknownType: `sagas list --type` of a saga type
// with no instance in the schema fails with exit status 1, nothing on
// standard output (with --json too), and the stored types named; a stored
// type whose instances the other filters leave out lists nothing, with
// exit status 0. The stored types' names sort around "/" in row keys
// (jobs-old and jobs.v2 before jobs, jobs0 after), so a scan from one
// type to the next could miss one.
func TestSagasListRefusesAnUnknownType(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store := newJobsStore(t)
	types := []string{"audits", "jobs", "jobs-old", "jobs.v2", "jobs0"}
	var defs []saga.Definition
	for _, name := range types {
		s := saga.New[cliJob](name, nil)
		saga.StartOn(s, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
			func(*saga.Step[cliJob], cliJobStarted) error { return saga.Permanent(errBrokenJob) })
		defs = append(defs, s)
	}
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: defs, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	for _, id := range []string{"a", "b/c", "z"} {
		_, err = store.Append(ctx, "job-"+id, events.AnyVersion, events.Event{Data: cliJobStarted{ID: id}})
		require.NoError(t, err)
		handleStream(t, store, eng, "job-"+id)
	}
	conn := []string{"--database-url", db.URL, "--schema", db.Schema}
	list := func(args ...string) []string { return append(append([]string{"sagas", "list"}, args...), conn...) }
	stored := "stored types: audits, jobs, jobs-old, jobs.v2, jobs0"

	for _, name := range refusedNames {
		for _, asJSON := range []bool{false, true} {
			args := list("--type", name)
			if asJSON {
				args = list("--type", name, "--json", "--status", "failed")
			}
			line := refusedOnce(t, "sagas list: no saga of type "+strconv.Quote(name)+" is stored in schema "+strconv.Quote(db.Schema), args...)
			require.Contains(t, line, "; "+stored+"\n", name)
		}
	}

	// Known types: listed, or nothing with exit status 0 when the other
	// filters leave every instance out.
	for _, typ := range types {
		stdout, stderr, status := runMain(t, list("--type", typ, "--json")...)
		require.Zero(t, status, "%s: %s", typ, stderr)
		require.Len(t, strings.Split(strings.TrimSpace(stdout), "\n"), 3, typ)
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var in saga.Info
			require.NoError(t, json.Unmarshal([]byte(line), &in), line)
			require.Equal(t, typ, in.Saga)
		}
		stdout, stderr, status = runMain(t, list("--type", typ, "--status", "running", "--json")...)
		require.Zero(t, status, "%s: %s", typ, stderr)
		require.Empty(t, stdout, typ)
		require.Empty(t, stderr, typ)
		stdout, stderr, status = runMain(t, list("--type", typ, "--stuck-for", "1h")...)
		require.Zero(t, status, "%s: %s", typ, stderr)
		require.Len(t, strings.Split(strings.TrimSpace(stdout), "\n"), 1, "%s: only the header", typ)
		stdout, _, status = runMain(t, list("--type", typ, "--after", typ+"/z", "--json")...)
		require.Zero(t, status, "%s: a page past the type's last instance", typ)
		require.Empty(t, stdout, typ)
	}
	// The metacharacters did nothing to the tables.
	stdout, _, status := runMain(t, list("--json")...)
	require.Zero(t, status)
	require.Len(t, strings.Split(strings.TrimSpace(stdout), "\n"), 3*len(types))

	// A schema without any instance says so.
	empty := pgtest.New(t, nil)
	refusedOnce(t, `sagas list: no saga of type "jobs" is stored in schema `+strconv.Quote(empty.Schema)+": it holds no saga instance yet",
		"sagas", "list", "--type", "jobs", "--database-url", empty.URL, "--schema", empty.Schema)
}

// TestDeadLettersListRefusesAnUnknownProcessor: `dead-letters list
// --processor` of a processor of which the schema holds nothing (no
// record, checkpoint or dead letter) fails with exit status 1, nothing on
// standard output (with --json too), and the known processors named; a
// known processor without dead letters lists none, with exit status 0.
func TestDeadLettersListRefusesAnUnknownProcessor(t *testing.T) {
	t.Parallel()
	b := setupOps(t)
	quiet := projections.New("ops_quiet", nil)
	projections.On(quiet, func(context.Context, *projections.Tx, events.Envelope, opsDeposited) error { return nil })
	lettered := make(chan projections.DeadLetter, 1)
	r := b.start(t, projections.RunnerConfig{
		Projections:  []*projections.Projection{b.projection("ops_letters"), quiet},
		MaxAttempts:  1,
		OnFailure:    projections.DeadLetterOnFailure,
		OnDeadLetter: func(dl projections.DeadLetter) { lettered <- dl },
	})
	b.deposit(t, "poison", 1)
	select {
	case <-lettered:
	case <-time.After(15 * time.Second):
		t.Fatal("no dead letter")
	}
	b.awaitCaughtUp(t, r, "ops_quiet")
	list := func(args ...string) []string {
		return append(append([]string{"dead-letters", "list"}, args...), b.conn...)
	}
	schema := b.conn[len(b.conn)-1]

	for _, name := range refusedNames {
		for _, asJSON := range []bool{false, true} {
			args := list("--processor", name)
			if asJSON {
				args = list("--processor", name, "--json")
			}
			line := refusedOnce(t, "dead-letters list: no processor named "+strconv.Quote(name)+" in schema "+strconv.Quote(schema)+"; known: ", args...)
			known := strings.Split(strings.TrimSpace(line[strings.Index(line, "; known: ")+len("; known: "):]), ", ")
			require.Contains(t, known, "ops_letters", name)
			require.Contains(t, known, "ops_quiet", name)
		}
	}

	stdout, stderr, status := runMain(t, list("--processor", "ops_letters", "--json")...)
	require.Zero(t, status, stderr)
	var e deadLetterEntry
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(stdout)), &e), stdout)
	require.Equal(t, "ops_letters", e.Processor)

	// Known, without dead letters: nothing listed, exit status 0.
	stdout, stderr, status = runMain(t, list("--processor", "ops_quiet", "--json")...)
	require.Zero(t, status, stderr)
	require.Empty(t, stdout)
	require.Empty(t, stderr)
	stdout, stderr, status = runMain(t, list("--processor", "ops_quiet")...)
	require.Zero(t, status, stderr)
	require.Equal(t, "no dead letters of processor ops_quiet in schema "+strconv.Quote(schema)+"\n", stdout)

	// The metacharacters did nothing to the tables.
	stdout, _, status = runMain(t, list("--json")...)
	require.Zero(t, status)
	require.Len(t, strings.Split(strings.TrimSpace(stdout), "\n"), 1)

	// A schema without any processor says so.
	empty := pgtest.New(t, nil)
	refusedOnce(t, `dead-letters list: no processor named "ops_letters" in schema `+strconv.Quote(empty.Schema)+": it has no processors yet",
		"dead-letters", "list", "--processor", "ops_letters", "--database-url", empty.URL, "--schema", empty.Schema)
}
