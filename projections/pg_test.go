package projections_test

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestPGCommitFailureLeavesNoEffect makes the unit's commit fail after the
// handler wrote its rows: another "process" takes the consumer's lease
// (fencing) while the handler runs. The rows roll back with the checkpoint
// and the event is applied exactly once after the consumer takes over again.
func TestPGCommitFailureLeavesNoEffect(t *testing.T) {
	t.Parallel()
	f := newPGFixture(t)
	var ids []string
	for i := range 4 {
		ids = append(ids, f.append(t, "s-1", Deposited{"a", i}).EventIDs[0])
	}
	var stolen atomic.Bool
	var victimRuns atomic.Int32
	fence := func(ctx context.Context, env events.Envelope) {
		if env.ID != ids[2] {
			return
		}
		victimRuns.Add(1)
		if stolen.CompareAndSwap(false, true) {
			_, err := f.db.Pool.Exec(ctx, "UPDATE checkpoints SET generation = generation + 1 WHERE name = 'fenced'")
			require.NoError(t, err)
		}
	}
	wrapped := projections.New("fenced", nil)
	projections.On(wrapped, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Deposited) error {
		t := tx.Table("counts")
		n, _, err := projections.Get[int](ctx, t, "total")
		if err != nil {
			return err
		}
		if err := t.Put(ctx, "total", n+1); err != nil {
			return err
		}
		seen, _, err := projections.Get[int](ctx, t, "seen-"+env.ID)
		if err != nil {
			return err
		}
		fence(ctx, env) // the rows are written; the commit will fail
		return t.Put(ctx, "seen-"+env.ID, seen+1)
	})
	r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{wrapped}})
	f.waitHead(t, "fenced")
	require.EqualValues(t, 2, victimRuns.Load(), "the victim ran, its commit failed, it ran again")
	requireCountedOnce(t, r, "fenced", ids)
}

// TestPGRawSQLCommitsWithReadModel writes a raw table through Tx.Pgx: it
// commits with the checkpoint and rolls back with a failed attempt.
func TestPGRawSQLCommitsWithReadModel(t *testing.T) {
	t.Parallel()
	f := newPGFixture(t)
	ctx := context.Background()
	_, err := f.db.Pool.Exec(ctx, "CREATE TABLE raw_deposits (account text, amount int, generation int)")
	require.NoError(t, err)
	var attempts atomic.Int32
	p := projections.New("raw", nil)
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
		pg, ok := tx.Pgx()
		if !ok {
			return errors.New("no pgx transaction")
		}
		if _, err := pg.Exec(ctx, "INSERT INTO raw_deposits VALUES ($1, $2, $3)", e.Account, e.Amount, tx.Generation()); err != nil {
			return err
		}
		if attempts.Add(1) == 1 {
			return fmt.Errorf("first attempt fails after the insert")
		}
		return nil
	})
	f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})
	res := f.append(t, "s-1", Deposited{"a", 5})
	f.waitFor(t, res.Token, "raw")
	var n int
	require.NoError(t, f.db.Pool.QueryRow(ctx, "SELECT count(*) FROM raw_deposits").Scan(&n))
	require.Equal(t, 1, n)
	require.EqualValues(t, 2, attempts.Load())
}
