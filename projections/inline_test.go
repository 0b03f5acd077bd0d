package projections_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// strongBalances is balances as a strong projection that can be made to
// reject deposits.
func strongBalances(name string, reject *atomic.Bool) *projections.Projection {
	p := projections.New(name, &projections.Config{Class: consistency.Strong, Description: "balances, read right after the write"})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
		if reject.Load() {
			return errors.New("deposits are rejected")
		}
		t := tx.Table("accounts")
		a, _, err := projections.Get[Account](ctx, t, e.Account)
		if err != nil {
			return err
		}
		a.Balance += e.Amount
		a.Count++
		return t.Put(ctx, e.Account, a)
	})
	return p
}

func TestInlineProjectionVisibleRightAfterAppend(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var reject atomic.Bool
			var catalog consistency.Catalog
			var updates atomic.Int32
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{strongBalances("strong_balances", &reject), balances("eventual_balances", nil)},
				Catalog:     &catalog,
				MaxAttempts: 2,
				OnUpdate: func(u projections.Update) {
					if u.Projection == "strong_balances" {
						updates.Add(1)
					}
				},
			})
			app := r.Appender()

			for i := range 3 {
				res, err := app.Append(ctx, "acct-1", events.AnyVersion, events.Event{Data: Deposited{"a", 10}})
				require.NoError(t, err)
				// No wait: the row committed with the events.
				a, ok := account(t, r, "strong_balances", "a")
				require.True(t, ok)
				require.Equal(t, Account{Balance: 10 * (i + 1), Count: i + 1}, a)
				require.Contains(t, res.Tokens, res.Token)
			}
			require.EqualValues(t, 3, updates.Load(), "OnUpdate hears of inline writes, once")

			// Appended through the store itself: the hook applies it too.
			direct := f.append(t, "acct-1", Deposited{"a", 5})
			a, _ := account(t, r, "strong_balances", "a")
			require.Equal(t, Account{Balance: 35, Count: 4}, a)
			f.waitFor(t, direct.Token, "strong_balances", "eventual_balances")
			a, _ = account(t, r, "strong_balances", "a")
			require.Equal(t, Account{Balance: 35, Count: 4}, a, "inline events were not applied again by the processor")
			e, _ := account(t, r, "eventual_balances", "a")
			require.Equal(t, 35, e.Balance)

			// A failing strong handler fails the append, on both stores:
			// nothing is stored.
			reject.Store(true)
			_, err := app.Append(ctx, "acct-1", events.AnyVersion, events.Event{Data: Deposited{"a", 1000}})
			require.ErrorContains(t, err, "deposits are rejected")
			v, verr := f.store.StreamVersion(ctx, "acct-1")
			require.NoError(t, verr)
			require.EqualValues(t, 4, v, "nothing was appended")
			reject.Store(false)

			models := catalog.ReadModels()
			require.Len(t, models, 2)
			require.Equal(t, consistency.ReadModel{Name: "eventual_balances", Class: consistency.Eventual, SLA: projections.DefaultSLA}, models[0])
			require.Equal(t, consistency.Strong, models[1].Class)
			require.Zero(t, models[1].SLA)
		})
	}
}

// TestInlineAppendRetryAppliesOnce retries an Appender append with the
// same events (as after a lost reply): the store returns the original
// result, and the strong projection must not apply the events again.
func TestInlineAppendRetryAppliesOnce(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var reject atomic.Bool
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{strongBalances("strong_balances", &reject)}})
			app := r.Appender()
			evs := events.AssignIDs([]events.Event{{Data: Deposited{"a", 10}}, {Data: Deposited{"a", 5}}})
			first, err := app.Append(ctx, "acct-1", events.NoStream, evs...)
			require.NoError(t, err)
			for range 2 {
				again, err := app.Append(ctx, "acct-1", events.NoStream, evs...)
				require.NoError(t, err, "a retry is not a conflict")
				require.True(t, again.AlreadyStored)
				require.Equal(t, first.Tokens, again.Tokens)
			}
			f.waitFor(t, first.Token, "strong_balances")
			a, ok := account(t, r, "strong_balances", "a")
			require.True(t, ok)
			require.Equal(t, Account{Balance: 15, Count: 2}, a, "each event is applied once")
		})
	}
}

// TestInlineAppendInUnit appends in a unit of work: the strong rows
// commit with the unit, a failing strong handler undoes its own append
// only and leaves the unit usable. A transaction the caller owns cannot
// run the hook, so AppendTx refuses strong events.
func TestInlineAppendInUnit(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var reject atomic.Bool
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{strongBalances("strong_tx", &reject)}})
			app := r.Appender()
			_, err := app.AppendTx(ctx, nil, "acct-1", events.AnyVersion, events.Event{Data: Deposited{"a", 1}})
			if f.db == nil {
				require.ErrorIs(t, err, projections.ErrNoTransactions)
			} else {
				require.ErrorIs(t, err, projections.ErrAppendTxWithStrong)
			}

			u, err := f.source.Checkpoints().Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = u.Rollback(ctx) }()
			_, err = u.Append(ctx, "acct-1", events.NoStream, events.Event{Data: Deposited{"a", 7}})
			require.NoError(t, err)
			_, ok := account(t, r, "strong_tx", "a")
			require.False(t, ok, "nothing is visible before the unit commits")

			reject.Store(true)
			_, err = u.Append(ctx, "acct-1", events.Exactly(1), events.Event{Data: Deposited{"a", 1}})
			require.Error(t, err)
			reject.Store(false) // the failed append undid only itself: the unit is usable
			res, err := u.Append(ctx, "acct-1", events.Exactly(1), events.Event{Data: Deposited{"a", 3}})
			require.NoError(t, err)
			require.NoError(t, u.Commit(ctx))

			a, ok := account(t, r, "strong_tx", "a")
			require.True(t, ok)
			require.Equal(t, Account{Balance: 10, Count: 2}, a)
			f.waitFor(t, res.Token, "strong_tx")
			a, _ = account(t, r, "strong_tx", "a")
			require.Equal(t, Account{Balance: 10, Count: 2}, a)
		})
	}
}

func TestRebuildStrongProjection(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var reject atomic.Bool
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{strongBalances("strong_rb", &reject)}})
			app := r.Appender()
			for range 5 {
				_, err := app.Append(ctx, "acct-1", events.AnyVersion, events.Event{Data: Deposited{"a", 2}})
				require.NoError(t, err)
			}
			f.append(t, "acct-2", Deposited{"b", 1})
			require.NoError(t, r.Rebuild(ctx, "strong_rb"))
			a, _ := account(t, r, "strong_rb", "a")
			require.Equal(t, Account{Balance: 10, Count: 5}, a)
			b, _ := account(t, r, "strong_rb", "b")
			require.Equal(t, Account{Balance: 1, Count: 1}, b)

			_, err := app.Append(ctx, "acct-1", events.AnyVersion, events.Event{Data: Deposited{"a", 2}})
			require.NoError(t, err)
			a, _ = account(t, r, "strong_rb", "a")
			require.Equal(t, Account{Balance: 12, Count: 6}, a, "inline applies reach the new generation")
			f.waitHead(t, "strong_rb")
			a, _ = account(t, r, "strong_rb", "a")
			require.Equal(t, Account{Balance: 12, Count: 6}, a)
		})
	}
}
