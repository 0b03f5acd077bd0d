package projections_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// TestRebuildOfPartitionedEventualProjectionAppliesEachEventOnce: an
// eventual projection split in two partitions is rebuilt while its live
// partitions and the rebuild's partitions are at different points (one
// live partition is behind, one rebuild partition is behind). The switch
// may happen only when the new generation then holds every event exactly
// once: here the live partition 0 is ahead of the rebuild's partition 0
// (its later events must not be lost), and the rebuild's partition 1 is
// ahead of the live partition 1 (its later events must not be applied
// twice).
func TestRebuildOfPartitionedEventualProjectionAppliesEachEventOnce(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			const name = "rb_split"
			const parts = 2
			// a[i] is an account whose stream ("acct-"+a[i]) falls in partition i.
			var a [parts]string
			for i, found := 0, 0; found < parts; i++ {
				n := accountName(i)
				if p := feed.PartitionOf("acct-"+n, parts); a[p] == "" {
					a[p] = n
					found++
				}
			}
			var holdLive, holdRebuild, released atomic.Bool
			var cutoff atomic.Pointer[events.Token]
			errHeld := errors.New("held")
			p := projections.New(name, &projections.Config{Partitions: parts})
			projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Deposited) error {
				if !released.Load() {
					// The live partition 1 stays before the events it is held at.
					if tx.Generation() == 1 && holdLive.Load() && e.Account == a[1] {
						return errHeld
					}
					// The rebuild's partition 0 stays at the cutoff.
					if c := cutoff.Load(); tx.Generation() == 2 && holdRebuild.Load() && e.Account == a[0] && env.Token.After(*c) {
						return errHeld
					}
				}
				tb := tx.Table("accounts")
				acc, _, err := projections.Get[Account](ctx, tb, e.Account)
				if err != nil {
					return err
				}
				acc.Balance += e.Amount
				acc.Count++
				return tb.Put(ctx, e.Account, acc)
			})
			r, attempts := f.startHearingSwitches(t, projections.RunnerConfig{Projections: []*projections.Projection{p}, MaxAttempts: 1 << 30})
			want := map[string]int{}
			deposit := func(i int) events.AppendResult {
				want[a[i]]++
				return f.append(t, "acct-"+a[i], Deposited{a[i], 1})
			}
			for range 3 {
				deposit(0)
				deposit(1)
			}
			f.waitHead(t, name)

			holdLive.Store(true)
			deposit(1) // X: the live partition 1 is held before it
			y0 := deposit(0)
			cutoff.Store(&y0.Token)
			holdRebuild.Store(true)
			deposit(0)       // Y1: the rebuild's partition 0 is held before it
			y2 := deposit(0) // Y2
			z := deposit(1)  // Z
			f.awaitStored(t, feed.PartitionName(name, 0, parts), y2.Token)

			rebuilt := make(chan struct{})
			var rebuildErr error
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			defer cancel()
			go func() {
				defer close(rebuilt)
				rebuildErr = r.Rebuild(rctx, name)
			}()
			// While both are held, a switch would leave the new generation
			// without Y1 and Y2 (partition 0) and apply Z twice (partition 1).
			// The rebuild's partitions reach where they are held, then the
			// runner gets two tries at a (wrong) switch.
			rebuilding := name + "@rebuild-2"
			f.awaitStored(t, feed.PartitionName(rebuilding, 0, parts), y0.Token)
			f.awaitStored(t, feed.PartitionName(rebuilding, 1, parts), z.Token)
			awaitSwitchAttempts(t, attempts, rebuilt, 2)
			released.Store(true)

			<-rebuilt
			require.NoError(t, rebuildErr)
			// One more deposit each, to see both partitions move on.
			deposit(0)
			deposit(1)
			f.waitHead(t, name)
			st, err := r.Status(ctx, name)
			require.NoError(t, err)
			require.Equal(t, 2, st.Generation)
			for i := range parts {
				got, ok := account(t, r, name, a[i])
				require.True(t, ok)
				assert.Equal(t, Account{Balance: want[a[i]], Count: want[a[i]]}, got, "account %s of partition %d: each deposit applied once", a[i], i)
			}
		})
	}
}
