package main

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

func TestDeadLettersListAndReplay(t *testing.T) {
	t.Parallel()
	b := setupOps(t)
	lettered := make(chan projections.DeadLetter, 1)
	r := b.start(t, projections.RunnerConfig{
		Projections:  []*projections.Projection{b.projection("ops_letters")},
		MaxAttempts:  1,
		OnFailure:    projections.DeadLetterOnFailure,
		OnDeadLetter: func(dl projections.DeadLetter) { lettered <- dl },
	})
	b.deposit(t, "a", 1)
	poison := b.deposit(t, "poison", 2)
	select {
	case <-lettered:
	case <-time.After(15 * time.Second):
		t.Fatal("no dead letter")
	}
	id := "ops_letters/" + poison.EventIDs[0]

	out, err := b.cli(t, "dead-letters", "list")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	require.Equal(t, []string{"ID", "TYPE", "STREAM", "VERSION", "AT", "ATTEMPTS", "REPLAY", "REASON"}, strings.Fields(lines[0]))
	require.Regexp(t, `^`+id+`\s+deposited\s+acct-poison\s+1\s+\S+\s+1\s+-\s+.*poison pill`, lines[1])

	out, err = b.cli(t, "dead-letters", "list", "--processor", "ops_letters", "--json")
	require.NoError(t, err)
	var e deadLetterEntry
	require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &e), out)
	require.Equal(t, id, e.ID)
	require.Equal(t, "ops_letters", e.Processor)
	require.Equal(t, poison.EventIDs[0], e.Event.ID)
	require.Equal(t, poison.Token, e.Event.Token)
	require.JSONEq(t, `{"account":"poison","amount":2}`, string(e.Event.Payload))
	require.Contains(t, e.Reason, "poison pill")
	require.Equal(t, 1, e.Attempts)
	require.Nil(t, e.Replay)

	out, err = b.cli(t, "dead-letters", "list", "--processor", "ops")
	require.ErrorContains(t, err, `dead-letters list: no processor named "ops" in schema`, "a name prefix is not a processor")
	require.ErrorContains(t, err, "known: ")
	require.ErrorContains(t, err, "ops_letters")
	require.Empty(t, out)

	// Still broken: the replay fails and the dead letter stays.
	out, err = b.cli(t, "dead-letters", "replay", id, "--wait", "--timeout", "30s")
	require.ErrorContains(t, err, "1 of 1 failed")
	require.Contains(t, out, id+": replay accepted")
	require.Contains(t, out, id+": replay failed, it stays a dead letter")
	require.Contains(t, out, "poison pill")
	out, err = b.cli(t, "dead-letters", "list")
	require.NoError(t, err)
	require.Regexp(t, id+`.*\sfailed\s`, out)

	// Fixed: replayed once, and gone from the list.
	b.broken.Store(false)
	out, err = b.cli(t, "dead-letters", "replay", id, "--wait", "--timeout", "30s")
	require.NoError(t, err, out)
	require.Contains(t, out, id+": replayed")
	n, ok, err := projections.Get[int](context.Background(), r.View("ops_letters").Table("balances"), "poison")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 2, n)
	out, err = b.cli(t, "dead-letters", "list", "--json")
	require.NoError(t, err)
	require.Empty(t, strings.TrimSpace(out))
	out, err = b.cli(t, "dead-letters", "list")
	require.NoError(t, err)
	require.Contains(t, out, "no dead letters in schema")

	// Bad and unknown IDs.
	_, err = b.cli(t, "dead-letters", "replay")
	require.ErrorContains(t, err, "takes one or more dead letter IDs (list them with `converge dead-letters list`)")
	_, err = b.cli(t, "dead-letters", "replay", "no-slash")
	require.ErrorContains(t, err, `dead letter ID "no-slash": use <checkpoint>/<event id>`)
	out, err = b.cli(t, "dead-letters", "replay", id)
	require.ErrorContains(t, err, "1 of 1 failed")
	require.Contains(t, out, id+": no such dead letter")
	// An id no dead letter can have (longer than a row key) is one more
	// unknown id, not an error that stops the others.
	long := "p/" + strings.Repeat("x", feed.MaxRowKeyLength)
	out, err = b.cli(t, "dead-letters", "replay", long, id)
	require.ErrorContains(t, err, "2 of 2 failed")
	require.Contains(t, out, long+": no such dead letter")
	require.Contains(t, out, id+": no such dead letter")

	// No application running: the replay is accepted, --wait runs out
	// with exit status 4, and the request stays for the next one.
	b.broken.Store(true)
	select {
	case <-lettered: // a report of the failed replay above, if any
	default:
	}
	again := b.deposit(t, "poison", 3)
	select {
	case <-lettered:
	case <-time.After(15 * time.Second):
		t.Fatal("no second dead letter")
	}
	stopRunner(t, r)
	id = "ops_letters/" + again.EventIDs[0]
	out, err = b.cli(t, "dead-letters", "replay", id, "--wait", "--timeout", "300ms")
	var to *timedOutError
	require.ErrorAs(t, err, &to)
	require.Equal(t, exitTimedOut, to.ExitCode())
	require.ErrorContains(t, err, "1 not replayed after 300ms")
	require.ErrorContains(t, err, "is the application running?")
	require.Contains(t, out, id+": replay accepted")
	out, err = b.cli(t, "dead-letters", "list")
	require.NoError(t, err)
	require.Regexp(t, id+`.*\srequested\s`, out, "the request stays pending")
}

// TestDeadLettersKeepControlCharactersOffTheTerminal: an id or processor
// name with a NUL or an escape sequence is shown quoted, never written to
// the terminal as it is, and a --processor no processor can have is
// refused, saying so, before the database is asked about it (a NUL
// failed deep in the listing, about a row query).
func TestDeadLettersKeepControlCharactersOffTheTerminal(t *testing.T) {
	t.Parallel()
	for _, p := range []string{"a\x00b", "a\x1b[31mb", "a\xffb", "a\nb"} {
		_, err := runCLI(t, "dead-letters", "list", "--processor", p, "--database-url", unreachable)
		require.Error(t, err, p)
		require.True(t, strings.HasPrefix(err.Error(), "--processor "+strconv.Quote(p)+": a processor name is UTF-8 text without control characters"), "%q: %v", p, err)
	}

	b := setupOps(t)
	ids := []string{"p/\x1b[31mred", "p/a\x00b", "p/\xff"}
	out, err := b.cli(t, append([]string{"dead-letters", "replay"}, ids...)...)
	require.ErrorContains(t, err, "3 of 3 failed: ")
	for _, id := range ids {
		require.Contains(t, out, strconv.Quote(id)+": no such dead letter", id)
		require.Contains(t, err.Error(), strconv.Quote(id), id)
	}
	for _, raw := range []string{"\x1b", "\x00", "\xff"} {
		require.NotContains(t, out, raw)
		require.NotContains(t, err.Error(), raw)
	}
	out, err = b.cli(t, "dead-letters", "list", "--processor", "caf\u00e9 ops")
	require.ErrorContains(t, err, "no processor named \"caf\u00e9 ops\" in schema", "printable names are shown as they are")
	require.Empty(t, out)
}
