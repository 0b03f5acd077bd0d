package lag_test

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestSplitPartitionsWithoutCheckpointsStandWhereTheyStart checks the
// package doc's rule for a split processor whose current partitions (by
// its record) have not all got a checkpoint yet: one without stands where
// it will start, at the slowest of the checkpoints the processor left
// behind (its unsplit run's, an earlier partition count's), not at the
// start of the feed. Over random processors (partition counts, checkpoints
// left behind, current partitions started or not: none, some or all) the
// processor is reported at the slowest of its current partitions so
// placed, with the events after it behind and in breach only then, and a
// Monitor told the processors' names (`converge lag NAME`) reports each
// exactly as one listing every consumer does.
func TestSplitPartitionsWithoutCheckpointsStandWhereTheyStart(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for kind, mk := range lagStores() {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			rng := rand.New(rand.NewPCG(seed, 13))
			store, clock := mk(t)
			toks := make([]events.Token, 6+rng.IntN(10))
			for i := range toks {
				clock.Advance(time.Second)
				res, err := store.Append(ctx, fmt.Sprint("order-", i), events.NoStream, rawEvent(i))
				require.NoError(t, err)
				toks[i] = res.Token
			}
			head := toks[len(toks)-1]
			anyTok := func() events.Token { return toks[rng.IntN(len(toks))] }

			type processor struct {
				name string
				want events.Token // where the Monitor is to report it
			}
			var procs []processor
			for i := range 9 {
				name := fmt.Sprint("p", i)
				n := 2 + rng.IntN(4)
				// Left behind: the unsplit run's checkpoint, and maybe the
				// partitions of an earlier count.
				start := anyTok()
				commitAt(t, store.Checkpoints(), name, start)
				if rng.IntN(2) == 0 {
					m := 2 + rng.IntN(4)
					if m == n {
						m++
					}
					for j := range m {
						pos := anyTok()
						commitAt(t, store.Checkpoints(), feed.PartitionName(name, j, m), pos)
						start = minToken(start, pos)
					}
				}
				u, err := store.Checkpoints().Begin(ctx)
				require.NoError(t, err)
				require.NoError(t, u.Rows().Put(u.Context(ctx), feed.RuntimeNamespace, feed.ProcessorsTable, name,
					json.RawMessage(fmt.Sprintf(`{"partitions":%d}`, n)), events.Token{}))
				require.NoError(t, u.Commit(u.Context(ctx)))

				// The current partitions: none started, some (one at least
				// and not all), or each at random.
				started := make([]bool, n)
				switch i % 3 {
				case 1:
					yes := rng.IntN(n)
					no := (yes + 1 + rng.IntN(n-1)) % n
					for j := range started {
						started[j] = j == yes || j != no && rng.IntN(2) == 0
					}
				case 2:
					for j := range started {
						started[j] = rng.IntN(2) == 0
					}
				}
				want := head
				for j, ok := range started {
					if !ok {
						want = minToken(want, start)
						continue
					}
					pos := anyTok() // behind start too: a run at this count before
					commitAt(t, store.Checkpoints(), feed.PartitionName(name, j, n), pos)
					want = minToken(want, pos)
				}
				t.Logf("%s: %d partitions, started %v, left behind down to event %d: at event %d",
					name, n, started, slices.Index(toks, start), slices.Index(toks, want))
				procs = append(procs, processor{name: name, want: want})
			}
			// A minute on, whatever is behind is far past its SLA.
			clock.Advance(time.Minute)

			every, err := lag.NewMonitor(store, &lag.Config{Clock: clock, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			listed, err := every.Check(ctx)
			require.NoError(t, err)
			targets := make([]lag.Target, len(procs))
			for i, p := range procs {
				targets[i] = lag.Target{Name: p.name}
			}
			byName, err := lag.NewMonitor(store, &lag.Config{Clock: clock, Logger: slog.New(slog.DiscardHandler), Projections: targets})
			require.NoError(t, err)
			named, err := byName.Check(ctx)
			require.NoError(t, err)

			require.Len(t, listed, len(procs), "each processor once")
			require.Len(t, named, len(procs))
			for i, p := range procs {
				l, n := listed[i], named[i]
				require.Equal(t, p.name, l.Name)
				require.Equal(t, p.name, n.Name)
				require.Equal(t, p.want, l.Checkpoint, "%s listed: where its slowest partition is or will start", p.name)
				behind := int64(len(toks) - 1 - slices.Index(toks, p.want))
				require.Equal(t, behind, l.PositionLag, p.name)
				require.Equal(t, behind > 0, l.Breached, "%s listed: %s", p.name, l.Reason)
				// Named, the same processor is in the same place.
				require.Equal(t, l.Checkpoint, n.Checkpoint, "%s named", p.name)
				require.Equal(t, l.PositionLag, n.PositionLag, "%s named", p.name)
				require.Equal(t, l.TimeLag, n.TimeLag, "%s named", p.name)
				require.Equal(t, l.Breached, n.Breached, "%s named: %s", p.name, n.Reason)
				require.Equal(t, l.Reason, n.Reason, "%s named", p.name)
			}
		})
	}
}

// minToken returns the earlier of a and b.
func minToken(a, b events.Token) events.Token {
	if b.Before(a) {
		return b
	}
	return a
}
