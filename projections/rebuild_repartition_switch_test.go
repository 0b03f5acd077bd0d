package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// TestRebuildSwitchAfterPartitionsMerged: a projection ran at 2
// partitions, one of which lagged; it now runs at 1 partition, whose
// live processor starts at the lowest carried position and skips what the
// faster old partition had handled. A rebuild (1 partition, from scratch)
// whose position is past the live one but before events the faster old
// partition handled must not switch there: the live processor skips those
// events (carried skips), so the new generation would never get them.
func TestRebuildSwitchAfterPartitionsMerged(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			const name = "merged"
			// An account in each partition of 2.
			var a0, a1 string
			for i := 0; a0 == "" || a1 == ""; i++ {
				a := accountName(i)
				if feed.PartitionOf("acct-"+a, 2) == 0 {
					if a0 == "" {
						a0 = a
					}
				} else if a1 == "" {
					a1 = a
				}
			}
			f.append(t, "acct-"+a0, Deposited{a0, 1})
			f.append(t, "acct-"+a1, Deposited{a1, 10})
			x := f.append(t, "acct-"+a0, Deposited{a0, 2})     // the live generation lags at it
			held := f.append(t, "acct-"+a1, Deposited{a1, 20}) // the rebuild stops after it
			y := f.append(t, "acct-"+a1, Deposited{a1, 30})    // handled by old partition 1

			var failX, failY atomic.Bool
			failX.Store(true)
			failY.Store(true)
			errHold := errors.New("held")
			proj := func(parts int) *projections.Projection {
				p := projections.New(name, &projections.Config{Partitions: parts})
				projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Deposited) error {
					if tx.Generation() == 1 && env.ID == x.EventIDs[0] && failX.Load() {
						return errHold
					}
					if tx.Generation() == 2 && env.ID == y.EventIDs[0] && failY.Load() {
						return errHold
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
			cfg := func(parts int) projections.RunnerConfig {
				return projections.RunnerConfig{
					Projections: []*projections.Projection{proj(parts)},
					MaxAttempts: 1 << 30, BackoffMin: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond,
					StatusPollInterval: 20 * time.Millisecond,
				}
			}

			// Two partitions: partition 1 handles everything, partition 0
			// lags before x.
			r := f.newRunner(t, cfg(2))
			require.NoError(t, r.Start(context.Background()))
			f.awaitStored(t, feed.PartitionName(name, 1, 2), y.Token)
			stop(t, r)

			// One partition: its live processor lags before x; the rebuild
			// holds at y until it got there and the runner had two tries at
			// a (wrong) switch.
			r, attempts := f.startHearingSwitches(t, cfg(1))
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			rebuilt := make(chan struct{})
			var rebuildErr error
			go func() {
				defer close(rebuilt)
				rebuildErr = r.Rebuild(ctx, name)
			}()
			f.awaitStored(t, name+"@rebuild-2", held.Token)
			awaitSwitchAttempts(t, attempts, rebuilt, 2)
			failY.Store(false)
			failX.Store(false)
			<-rebuilt
			require.NoError(t, rebuildErr)
			f.append(t, "acct-"+a0, Deposited{a0, 3})
			f.waitHead(t, name)

			got := map[string]Account{}
			for _, row := range snapshot(t, r, name, "accounts") {
				var a Account
				require.NoError(t, json.Unmarshal(row.Value, &a))
				got[row.Key] = a
			}
			want := map[string]Account{
				a0: {Balance: 6, Count: 3},
				a1: {Balance: 60, Count: 3},
			}
			require.Equal(t, want, got, "every event applied once in the rebuilt generation")
		})
	}
}
