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
				pos, ok := f.tracker.Position("strong_balances")
				require.True(t, ok)
				require.False(t, pos.Before(res.Token), "the tracker knows at once")
			}
			require.EqualValues(t, 3, updates.Load(), "OnUpdate hears of inline writes, once")

			// Appended around the Appender: the feed consumer applies it.
			bypass := f.append(t, "acct-1", Deposited{"a", 5})
			f.waitFor(t, bypass.Token, "strong_balances", "eventual_balances")
			a, _ := account(t, r, "strong_balances", "a")
			require.Equal(t, Account{Balance: 35, Count: 4}, a, "inline events were not applied again by the feed")
			e, _ := account(t, r, "eventual_balances", "a")
			require.Equal(t, 35, e.Balance)

			// A failing strong handler.
			reject.Store(true)
			_, err := app.Append(ctx, "acct-1", events.AnyVersion, events.Event{Data: Deposited{"a", 1000}})
			require.Error(t, err)
			v, verr := f.store.StreamVersion(ctx, "acct-1")
			require.NoError(t, verr)
			if f.db != nil {
				require.NotErrorIs(t, err, projections.ErrAppendedNotApplied)
				require.EqualValues(t, 4, v, "nothing was appended")
			} else {
				require.ErrorIs(t, err, projections.ErrAppendedNotApplied)
				require.EqualValues(t, 5, v, "memory cannot roll the append back")
				reject.Store(false) // the feed consumer applies it now
				f.waitHead(t, "strong_balances")
				a, _ = account(t, r, "strong_balances", "a")
				require.Equal(t, Account{Balance: 1035, Count: 5}, a)
			}

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

func TestInlineAppendTx(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var reject atomic.Bool
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{strongBalances("strong_tx", &reject)}})
			app := r.Appender()
			if f.db == nil {
				_, err := app.AppendTx(ctx, nil, "acct-1", events.AnyVersion, events.Event{Data: Deposited{"a", 1}})
				require.ErrorIs(t, err, projections.ErrNoTransactions)
				return
			}
			tx, err := f.db.Pool.Begin(ctx)
			require.NoError(t, err)
			_, err = app.AppendTx(ctx, tx, "acct-1", events.NoStream, events.Event{Data: Deposited{"a", 7}})
			require.NoError(t, err)
			_, ok := account(t, r, "strong_tx", "a")
			require.False(t, ok, "nothing is visible before the caller commits")

			reject.Store(true)
			_, err = app.AppendTx(ctx, tx, "acct-1", events.Exactly(1), events.Event{Data: Deposited{"a", 1}})
			require.Error(t, err)
			reject.Store(false) // the failed call rolled back to its savepoint: tx is usable
			res, err := app.AppendTx(ctx, tx, "acct-1", events.Exactly(1), events.Event{Data: Deposited{"a", 3}})
			require.NoError(t, err)
			require.NoError(t, tx.Commit(ctx))

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
