package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestStrongConcurrentAppendsApplyEachOnce appends deposits to one
// account from many streams at once, through the Runner's Appender, to a
// strong projection whose handler adds to the account's row (the doc's
// own order_summary pattern). Every event's effect must land exactly
// once, on both stores: Balance == n and Count == n.
func TestStrongConcurrentAppendsApplyEachOnce(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			p := strongBalances("strong_race", new(atomic.Bool)) // reads an account's row and writes it back
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})
			app := r.Appender()
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, 5))
			workers, per := 2+rng.IntN(7), 5+rng.IntN(10)
			var wg sync.WaitGroup
			errs := make(chan error, workers*per)
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range per {
						_, err := app.Append(ctx, fmt.Sprintf("s-%d-%d", w, i), events.AnyVersion, events.Event{Data: Deposited{"a", 1}})
						if err != nil {
							errs <- err
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			f.waitHead(t, "strong_race")
			a, ok := account(t, r, "strong_race", "a")
			require.True(t, ok)
			require.Equal(t, Account{Balance: workers * per, Count: workers * per}, a, "seed %d: each of the %d events applied once", seed, workers*per)
		})
	}
}
