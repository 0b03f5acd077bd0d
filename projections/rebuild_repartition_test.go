package projections_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// errStopHere is the failure that makes a rebuild partition commit the
// events before its stopping point in a unit of their own.
var errStopHere = errors.New("the rebuild partition stops here")

// rebuildStop stops each partition of a rebuild split in parts at its
// cutoff: the first event after it fails once (the events before it then
// commit by themselves), and is then held until the runner stops, so the
// partition's checkpoint stays at the cutoff.
type rebuildStop struct {
	parts   int
	cutoffs []events.Token
	held    []*once // fired once partition i holds the event after its cutoff

	mu     sync.Mutex
	failed map[string]bool
}

func newRebuildStop(cutoffs []events.Token) *rebuildStop {
	s := &rebuildStop{parts: len(cutoffs), cutoffs: cutoffs, failed: map[string]bool{}}
	for range cutoffs {
		s.held = append(s.held, newOnce())
	}
	return s
}

func (s *rebuildStop) hold(ctx context.Context, tx *projections.Tx, env events.Envelope) error {
	if s == nil || tx.Generation() == 1 {
		return nil // the live generation runs on
	}
	i := feed.PartitionOf(feed.KeyOf(feed.ByStream, env), s.parts)
	if !env.Token.After(s.cutoffs[i]) {
		return nil
	}
	s.mu.Lock()
	first := !s.failed[env.ID]
	s.failed[env.ID] = true
	s.mu.Unlock()
	if first {
		return errStopHere
	}
	s.held[i].fire()
	<-ctx.Done()
	return ctx.Err()
}

// stoppableBalances is balances over deposits at parts partitions, whose
// rebuild stop holds where it says (nil: nowhere).
func stoppableBalances(name string, parts int, stop *rebuildStop) *projections.Projection {
	p := projections.New(name, &projections.Config{Partitions: parts})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Deposited) error {
		if err := stop.hold(ctx, tx, env); err != nil {
			return err
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

// TestRebuildResumedAtOnePartition checks that a rebuild stopped part way
// at one partition count and resumed unsplit builds the model a
// recomputation gives. The rebuild runs split in 2 to 4 partitions (at
// random; first, or after an unsplit run that committed nothing), is
// stopped with one partition still at the start of the feed and the others
// at random points, and then runs unsplit. Its single partition starts at the beginning of the feed, as a
// rebuild from scratch does, but skips the events the old partitions
// handled (carried positions): their rows exist in the new generation
// although this delivery never wrote them, so a row it has not seen is
// not known to be absent. Events after the stop then update those rows
// instead of overwriting them.
func TestRebuildResumedAtOnePartition(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, seed))
			f := b.setup(t)
			const name = "resplit"
			split := 2 + rng.IntN(3)
			counts := []int{split, 1}
			if rng.IntN(2) == 0 {
				counts = []int{1, split, 1}
			}
			t.Logf("partition counts %v", counts)

			// An account in each partition of split, and a few more.
			var accts []string
			for i, found := 0, map[int]bool{}; len(found) < split; i++ {
				a := accountName(i)
				if part := feed.PartitionOf("acct-"+a, split); !found[part] {
					found[part] = true
					accts = append(accts, a)
				}
			}
			for i := range rng.IntN(4) {
				accts = append(accts, accountName(1000+i))
			}
			want := map[string]Account{}
			tokens := map[int][]events.Token{} // by partition of split
			deposit := func(a string) {
				amt := 1 + rng.IntN(100)
				res := f.append(t, "acct-"+a, Deposited{a, amt})
				part := feed.PartitionOf("acct-"+a, split)
				tokens[part] = append(tokens[part], res.Token)
				w := want[a]
				w.Balance += amt
				w.Count++
				want[a] = w
			}
			// At least two deposits in every partition, in random order.
			var plan []string
			for _, a := range accts {
				for range 2 + rng.IntN(3) {
					plan = append(plan, a)
				}
			}
			rng.Shuffle(len(plan), func(i, j int) { plan[i], plan[j] = plan[j], plan[i] })
			for _, a := range plan {
				deposit(a)
			}

			// Each run but the last starts or resumes the rebuild and stops it.
			rebuilding := false
			for _, parts := range counts[:len(counts)-1] {
				// Partition i commits up to cutoffs[i] and holds the event
				// next[i]. Unsplit, it holds the first event; split, one
				// partition holds its first, another commits some of its
				// events, the rest stop anywhere before their last.
				cutoffs, next := make([]events.Token, parts), make([]events.Token, parts)
				if parts == 1 {
					for _, toks := range tokens {
						if next[0].IsZero() || toks[0].Before(next[0]) {
							next[0] = toks[0]
						}
					}
				} else {
					order := rng.Perm(parts)
					for k, i := range order {
						n := 0
						switch {
						case k == 1:
							n = 1 + rng.IntN(len(tokens[i])-1)
						case k > 1:
							n = rng.IntN(len(tokens[i]))
						}
						if n > 0 {
							cutoffs[i] = tokens[i][n-1]
						}
						next[i] = tokens[i][n]
					}
				}
				t.Logf("%d partitions stopped after %v", parts, cutoffs)
				stopAt := newRebuildStop(cutoffs)
				r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{stoppableBalances(name, parts, stopAt)}})
				require.NoError(t, r.Start(context.Background()))
				var rebuilt chan error
				if !rebuilding {
					f.waitHead(t, name)
					rebuilt = make(chan error, 1)
					go func() { rebuilt <- r.Rebuild(context.Background(), name) }()
					rebuilding = true
				}
				for i := range parts {
					await(t, stopAt.held[i].C(), "the rebuild's partition at its stopping point")
					pos, err := f.source.Checkpoints().Position(context.Background(), feed.PartitionName(name+"@rebuild-2", i, parts))
					require.NoError(t, err)
					require.False(t, pos.Before(cutoffs[i]), "partition %d of %d committed up to its stopping point", i, parts)
					require.True(t, pos.Before(next[i]), "partition %d of %d committed nothing after its stopping point", i, parts)
				}
				stop(t, r)
				if rebuilt != nil {
					select {
					case err := <-rebuilt:
						require.ErrorIs(t, err, projections.ErrStopped)
					case <-time.After(waitTimeout):
						t.Fatal("Rebuild still waits after Stop returned")
					}
				}
				for range rng.IntN(3) {
					deposit(accts[rng.IntN(len(accts))])
				}
			}

			// After the stop every account has a deposit more, then the
			// rebuild resumes unsplit.
			for _, i := range rng.Perm(len(accts)) {
				deposit(accts[i])
			}
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{stoppableBalances(name, 1, nil)}})
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			require.NoError(t, r.AwaitRebuild(ctx, name))
			f.waitHead(t, name)
			st, err := r.Status(ctx, name)
			require.NoError(t, err)
			require.Equal(t, 2, st.Generation)
			got := map[string]Account{}
			for _, row := range snapshot(t, r, name, "accounts") {
				var a Account
				require.NoError(t, json.Unmarshal(row.Value, &a))
				got[row.Key] = a
			}
			require.Equal(t, want, got, "the resumed rebuild equals the recomputation (seed %d, partition counts %v)", seed, counts)
		})
	}
}
