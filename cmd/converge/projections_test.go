package main

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/projections"
)

// opsDeposited is the event of the operator commands' tests.
type opsDeposited struct {
	Account string `json:"account"`
	Amount  int    `json:"amount"`
}

// opsBundle is a migrated schema with a store, and an application's
// projection whose handler fails on the "poison" account while broken.
type opsBundle struct {
	conn   []string // --database-url and --schema
	store  *pgstore.Store
	broken atomic.Bool
}

func setupOps(t *testing.T) *opsBundle {
	t.Helper()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 12})
	reg := events.NewRegistry()
	events.Register[opsDeposited](reg, "deposited")
	store, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	b := &opsBundle{conn: []string{"--database-url", db.URL, "--schema", db.Schema}, store: store}
	b.broken.Store(true)
	return b
}

// cli runs converge with the bundle's connection flags after args.
func (b *opsBundle) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return runCLI(t, append(args, b.conn...)...)
}

// projection is the application's projection: balances per account.
func (b *opsBundle) projection(name string) *projections.Projection {
	p := projections.New(name, nil)
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e opsDeposited) error {
		if e.Account == "poison" && b.broken.Load() {
			return errors.New("poison pill")
		}
		t := tx.Table("balances")
		n, _, err := projections.Get[int](ctx, t, e.Account)
		if err != nil {
			return err
		}
		return t.Put(ctx, e.Account, n+e.Amount)
	})
	return p
}

// start runs the application's runner until the test ends.
func (b *opsBundle) start(t *testing.T, cfg projections.RunnerConfig) *projections.Runner {
	t.Helper()
	cfg.Source = b.store
	cfg.Logger = slog.New(slog.DiscardHandler)
	cfg.BackoffMin, cfg.BackoffMax = time.Millisecond, 5*time.Millisecond
	cfg.StatusPollInterval = 20 * time.Millisecond
	r, err := projections.NewRunner(&cfg)
	require.NoError(t, err)
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() { stopRunner(t, r) })
	return r
}

func stopRunner(t *testing.T, r *projections.Runner) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, r.Stop(ctx))
}

func (b *opsBundle) deposit(t *testing.T, account string, amount int) events.AppendResult {
	t.Helper()
	res, err := b.store.Append(context.Background(), "acct-"+account, events.AnyVersion, events.Event{Data: opsDeposited{account, amount}})
	require.NoError(t, err)
	return res
}

// awaitCaughtUp waits until the runner's projection is running at the head.
func (b *opsBundle) awaitCaughtUp(t *testing.T, r *projections.Runner, name string) projections.Status {
	t.Helper()
	head, err := b.store.Head(context.Background())
	require.NoError(t, err)
	var st projections.Status
	require.Eventually(t, func() bool {
		st, err = r.Status(context.Background(), name)
		return err == nil && st.State == projections.StateRunning && !st.Checkpoint.Before(head)
	}, 15*time.Second, 10*time.Millisecond)
	return st
}

func statusJSON(t *testing.T, out string) map[string]projectionStatus {
	t.Helper()
	got := map[string]projectionStatus{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var s projectionStatus
		require.NoError(t, json.Unmarshal([]byte(line), &s), line)
		got[s.Name] = s
	}
	return got
}

func TestProjectionsStatusAndResume(t *testing.T) {
	t.Parallel()
	b := setupOps(t)
	halted := make(chan *projections.HaltedError, 1)
	r := b.start(t, projections.RunnerConfig{
		Projections: []*projections.Projection{b.projection("ops_balances"), b.projection("ops_other")},
		MaxAttempts: 2,
		// ops_other halts on the poison too, and may do so first.
		OnHalt: func(h *projections.HaltedError) {
			if h.Projection == "ops_balances" {
				halted <- h
			}
		},
	})
	b.deposit(t, "a", 1)
	poison := b.deposit(t, "poison", 2)
	b.deposit(t, "b", 3)
	var h *projections.HaltedError
	select {
	case h = <-halted:
	case <-time.After(15 * time.Second):
		t.Fatal("the projection did not halt")
	}
	require.Equal(t, poison.EventIDs[0], h.EventID)

	out, err := b.cli(t, "projections", "status", "ops_balances")
	require.NoError(t, err)
	require.Contains(t, out, "PROJECTION")
	require.Regexp(t, `ops_balances\s+eventual\s+1\s+v2\.\S+\s+2\s+halted\s+\S+\s+-`, out, "position before the poison: two events behind")
	require.Contains(t, out, "ops_balances halted at event "+poison.EventIDs[0])
	require.Contains(t, out, "poison pill")
	require.Contains(t, out, "converge projections resume ops_balances")
	require.NotContains(t, out, "ops_other", "only the named projection")

	out, err = b.cli(t, "projections", "status", "--json")
	require.NoError(t, err)
	sts := statusJSON(t, out)
	require.Len(t, sts, 2)
	s := sts["ops_balances"]
	require.Equal(t, "halted", s.State)
	require.Equal(t, 1, s.Generation)
	require.EqualValues(t, 2, s.Behind)
	require.Len(t, s.Halts, 1)
	require.Equal(t, poison.EventIDs[0], s.Halts[0].EventID)
	require.Contains(t, s.Halts[0].Reason, "poison pill")
	require.Len(t, s.Leases, 1)
	require.NotEmpty(t, s.Leases[0].Owner)
	require.Nil(t, s.Rebuild)

	_, err = b.cli(t, "projections", "status", "ops_balances", "nosuch")
	require.ErrorContains(t, err, `no projection named "nosuch" in schema`)
	require.ErrorContains(t, err, "known: ops_balances, ops_other")
	_, err = b.cli(t, "projections", "resume", "nosuch")
	require.ErrorContains(t, err, "known: ops_balances, ops_other")

	// Fixed: resume clears the halt for every process running it.
	b.broken.Store(false)
	out, err = b.cli(t, "projections", "resume", "ops_balances")
	require.NoError(t, err)
	require.Contains(t, out, "resumed ops_balances: it was halted at event "+poison.EventIDs[0])
	require.Contains(t, out, "poison pill")
	b.awaitCaughtUp(t, r, "ops_balances")
	n, ok, err := projections.Get[int](context.Background(), r.View("ops_balances").Table("balances"), "poison")
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, 2, n)

	out, err = b.cli(t, "projections", "status", "ops_balances", "--json")
	require.NoError(t, err)
	s = statusJSON(t, out)["ops_balances"]
	require.Equal(t, "running", s.State)
	require.Zero(t, s.Behind)
	require.Empty(t, s.Halts)

	out, err = b.cli(t, "projections", "resume", "ops_balances")
	require.NoError(t, err)
	require.Contains(t, out, "ops_balances is not halted")
}

func TestProjectionsRebuildAndResetWait(t *testing.T) {
	t.Parallel()
	b := setupOps(t)
	b.broken.Store(false)
	cfg := projections.RunnerConfig{Projections: []*projections.Projection{b.projection("ops_rebuilt")}}
	r := b.start(t, cfg)
	first := b.deposit(t, "a", 1)
	b.deposit(t, "b", 2)
	b.deposit(t, "a", 3)
	b.awaitCaughtUp(t, r, "ops_rebuilt")

	out, err := b.cli(t, "projections", "rebuild", "ops_rebuilt", "--wait", "--timeout", "30s")
	require.NoError(t, err, out)
	require.Contains(t, out, "accepted: rebuild of ops_rebuilt")
	require.Contains(t, out, "done: generation 2 is active")
	st := b.awaitCaughtUp(t, r, "ops_rebuilt")
	require.Equal(t, 2, st.Generation)
	n, _, err := projections.Get[int](context.Background(), r.View("ops_rebuilt").Table("balances"), "a")
	require.NoError(t, err)
	require.Equal(t, 4, n, "the rebuilt generation applied each event once")

	out, err = b.cli(t, "projections", "reset", "ops_rebuilt", "--to", first.Token.String(), "--wait", "--timeout", "30s")
	require.NoError(t, err, out)
	require.Contains(t, out, "accepted: reset of ops_rebuilt to "+first.Token.String())
	require.Contains(t, out, "done: the checkpoints were moved back to "+first.Token.String())

	_, err = b.cli(t, "projections", "rebuild", "nosuch")
	require.ErrorContains(t, err, `no projection named "nosuch"`)
	require.ErrorContains(t, err, "known: ops_rebuilt")
	_, err = b.cli(t, "projections", "reset", "ops_rebuilt", "--to", "garbage")
	require.ErrorContains(t, err, `--to "garbage"`)
	_, err = b.cli(t, "projections", "rebuild")
	require.ErrorContains(t, err, "converge projections rebuild takes one projection name, got 0 (list them with `converge projections status`)")
	_, err = b.cli(t, "projections", "rebuild", "ops_rebuilt", "--timeout", "0s")
	require.ErrorContains(t, err, "--timeout 0s")

	// No application running: the request is accepted, --wait runs out
	// with exit status 4, and a second request is refused meanwhile.
	stopRunner(t, r)
	out, err = b.cli(t, "projections", "rebuild", "ops_rebuilt", "--wait", "--timeout", "300ms")
	var to *timedOutError
	require.ErrorAs(t, err, &to)
	require.Equal(t, exitTimedOut, to.ExitCode())
	require.ErrorContains(t, err, "still pending")
	require.Contains(t, out, "pending: waiting for a running application")
	_, err = b.cli(t, "projections", "reset", "ops_rebuilt")
	require.ErrorIs(t, err, projections.ErrRequestPending)

	out, err = b.cli(t, "projections", "status", "ops_rebuilt")
	require.NoError(t, err)
	require.Contains(t, out, "ops_rebuilt: rebuild requested at")

	// Without --wait it only reports the request accepted; an application
	// started later carries out the one already pending.
	r = b.start(t, cfg)
	require.Eventually(t, func() bool {
		st, err := r.Status(context.Background(), "ops_rebuilt")
		return err == nil && st.Generation == 3
	}, 15*time.Second, 10*time.Millisecond)
	// A finished request stays in the table's report, with its outcome:
	// an operator who did not wait learns how it ended (or why it failed).
	require.Eventually(t, func() bool {
		q, ok, err := projections.ReadRequest(context.Background(), b.store.Rows(), "ops_rebuilt")
		return err == nil && ok && q.Finished()
	}, 15*time.Second, 10*time.Millisecond)
	out, err = b.cli(t, "projections", "status", "ops_rebuilt")
	require.NoError(t, err)
	require.Regexp(t, `ops_rebuilt: rebuild requested at \S+: done: generation 3 is active`, out)
}
