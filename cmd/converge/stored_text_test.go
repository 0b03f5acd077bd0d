package main

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// controlText is printable words with control characters among them:
// C0 ones (NUL, BEL, ESC starting a sequence, newline), DEL, C1 ones and,
// unless forDB, a NUL and a byte that is no UTF-8 (PostgreSQL stores
// neither in JSON).
func controlText(rng *rand.Rand, forDB bool) string {
	controls := []string{"\a", "\x1b[2J", "\x1b]0;pwned\a", "\n", "\r", "\b", "\t", "\x7f", "\u009b31m", "\u0085"}
	if !forDB {
		controls = append(controls, "\x00", "\xff")
	}
	var b strings.Builder
	b.WriteString(randomLabel(rng))
	for range 1 + rng.IntN(4) {
		b.WriteString(controls[rng.IntN(len(controls))])
		if rng.IntN(2) == 0 {
			b.WriteString(randomLabel(rng))
		}
	}
	return b.String()
}

// requireTerminalSafe fails unless every line of out is valid UTF-8 of
// printable characters and out shows each of stored Go-quoted.
func requireTerminalSafe(t *testing.T, out string, stored ...string) {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		require.True(t, utf8.ValidString(line), "%q", line)
		require.False(t, strings.ContainsFunc(line, func(r rune) bool { return !unicode.IsPrint(r) }), "a control character reaches the terminal in %q", line)
	}
	for _, s := range stored {
		require.Contains(t, out, strconv.Quote(s))
	}
}

// TestStoredTextReachesTheTerminalEscaped: reasons, details and errors
// read from the database (a saga's failure reason, its history, the
// ignored messages, a projection's halt, a request's error) print
// Go-quoted in the human output of sagas and projections when they hold
// control characters, so an escape sequence or a BEL in one cannot act
// on the operator's terminal. --json is JSON, escaped already.
func TestStoredTextReachesTheTerminalEscaped(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 9))
	now := time.Now()
	for range 200 {
		reason, detail, ignored := controlText(rng, false), controlText(rng, false), controlText(rng, false)
		info := saga.Info{Saga: "jobs", ID: "j-1", Status: saga.StatusFailed, Reason: reason, Updated: now}

		var out bytes.Buffer
		require.NoError(t, writeInstanceTable(&out, []saga.Info{info}, now))
		requireTerminalSafe(t, out.String(), reason)

		before := saga.Timeline{Info: info, History: []saga.HistoryEntry{{Seq: 1, Kind: saga.KindFailed, Detail: reason}}}
		after := before
		after.History = append(after.History, saga.HistoryEntry{Seq: 2, Kind: saga.KindCancelled, Detail: detail})
		after.Ignored = []saga.IgnoredMessage{{EventID: "e-1", EventType: "job.checked", Reason: ignored}}
		out.Reset()
		require.NoError(t, writeTimeline(&out, after))
		requireTerminalSafe(t, out.String(), reason, detail, ignored)

		out.Reset()
		require.NoError(t, writeIgnored(&out, "saga instance", "j-1", []saga.IgnoredFor{{Saga: "jobs", ID: "j-1", Ignored: after.Ignored}}))
		requireTerminalSafe(t, out.String(), ignored)

		line, err := requestOutcome("jobs", "j-1", before, after)
		require.NoError(t, err)
		requireTerminalSafe(t, line, detail)
		refused := after
		refused.History = slices.Clone(after.History)
		refused.History[1].Kind = saga.KindRequestRefused
		_, err = requestOutcome("jobs", "j-1", before, refused)
		require.Error(t, err)
		requireTerminalSafe(t, err.Error(), detail)

		halt := feed.HaltRecord{EventID: "e-2", Type: "deposited", StreamID: "acct-a", Reason: reason, Attempts: 3}
		failed := &projections.Request{Op: projections.OpRebuild, State: projections.RequestFailed, Error: detail}
		out.Reset()
		require.NoError(t, printStatus(&out, "s", []projectionStatus{{
			Name: "balances", State: "halted", Halts: []feed.HaltRecord{halt},
			Rebuild: &rebuildInfo{Generation: 2, Halts: []feed.HaltRecord{halt}}, Request: failed,
		}}))
		requireTerminalSafe(t, out.String(), reason, detail)
	}
}

// TestProjectionHaltReasonPrintsEscaped: a projection halted by an error
// whose text holds control characters shows it Go-quoted in `projections
// status` and `projections resume`, read back from the database.
func TestProjectionHaltReasonPrintsEscaped(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	reason := controlText(rand.New(rand.NewPCG(seed, 10)), true)
	b := setupOps(t)
	p := projections.New("ops_escaped", nil)
	projections.On(p, func(context.Context, *projections.Tx, events.Envelope, opsDeposited) error {
		return errors.New(reason)
	})
	halted := make(chan struct{}, 1)
	b.start(t, projections.RunnerConfig{
		Projections: []*projections.Projection{p},
		MaxAttempts: 1,
		OnHalt: func(*projections.HaltedError) {
			select {
			case halted <- struct{}{}:
			default:
			}
		},
	})
	b.deposit(t, "a", 1)
	select {
	case <-halted:
	case <-time.After(15 * time.Second):
		t.Fatal("the projection did not halt")
	}
	out, err := b.cli(t, "projections", "status", "ops_escaped")
	require.NoError(t, err)
	require.Contains(t, out, "ops_escaped halted at event")
	requireTerminalSafe(t, out)
	require.Contains(t, out, strconv.Quote(reason)[1:len(strconv.Quote(reason))-1], "the reason, escaped")

	out, err = b.cli(t, "projections", "resume", "ops_escaped")
	require.NoError(t, err)
	require.Contains(t, out, "resumed ops_escaped")
	requireTerminalSafe(t, out)
	require.Contains(t, out, strconv.Quote(reason)[1:len(strconv.Quote(reason))-1], "the reason, escaped")
}
