package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// balancesOfBuild is the balances projection of a build: deposits, and with
// withdrawals set (the newer build) withdrawals too.
func balancesOfBuild(withdrawals bool) *projections.Projection {
	p := projections.New("rolling_balances", nil)
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
		return addToAccount(ctx, tx, e.Account, e.Amount)
	})
	if withdrawals {
		projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Withdrawn) error {
			return addToAccount(ctx, tx, e.Account, -e.Amount)
		})
	}
	return p
}

// addToAccount adds d to acct's balance and counts the event.
func addToAccount(ctx context.Context, tx *projections.Tx, acct string, d int) error {
	a, _, err := projections.Get[Account](ctx, tx.Table("accounts"), acct)
	if err != nil {
		return err
	}
	a.Balance += d
	a.Count++
	return tx.Table("accounts").Put(ctx, acct, a)
}

// TestRollingDeployProjectionGoesToTheBuildThatHandlesMore: a newer build
// adds a handler (withdrawals) to a projection the older build runs. With
// both running, the newer build's process holds the projection and the
// older one stands by: a withdrawal is applied, not filtered out of the
// older build's reads with the checkpoint moved past it for good.
func TestRollingDeployProjectionGoesToTheBuildThatHandlesMore(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			older := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balancesOfBuild(false)}})
			f.append(t, "acct-a", Deposited{"a", 10})
			f.waitHead(t, "rolling_balances")

			newer := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balancesOfBuild(true)}})
			require.Eventually(t, func() bool {
				o, err1 := older.Status(ctx, "rolling_balances")
				n, err2 := newer.Status(ctx, "rolling_balances")
				return err1 == nil && err2 == nil && n.Consumer.Lease == feed.LeaseHolding && o.Consumer.Lease != feed.LeaseHolding
			}, waitTimeout, 5*time.Millisecond, "the newer build never took the projection over")

			f.append(t, "acct-a", Withdrawn{"a", 3})
			f.append(t, "acct-a", Deposited{"a", 1})
			f.waitHead(t, "rolling_balances")
			a, found := account(t, newer, "rolling_balances", "a")
			require.True(t, found)
			require.Equal(t, Account{Balance: 8, Count: 3}, a, "every event applied once, the withdrawal included")
		})
	}
}
