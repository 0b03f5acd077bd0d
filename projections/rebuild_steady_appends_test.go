package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestRebuildSwitchesUnderSteadyAppends: Rebuild of an eventual projection
// returns (switches) while writers append handled events without pause,
// and every event is then applied exactly once. The switch used to wait
// for a moment when no handled event followed the rebuild's position,
// which steady appends never left: the rebuild ran for good.
func TestRebuildSwitchesUnderSteadyAppends(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			const name = "rb_steady"
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{countingProjection(name)}})
			app := r.Appender()
			var mu sync.Mutex
			var ids []string
			appendOne := func(i int) error {
				res, err := app.Append(ctx, fmt.Sprintf("s-%d", i%4), events.AnyVersion, events.Event{Data: Deposited{"a", i}})
				if err != nil {
					return err
				}
				mu.Lock()
				ids = append(ids, res.EventIDs[0])
				mu.Unlock()
				return nil
			}
			for i := range 50 + rand.IntN(150) {
				require.NoError(t, appendOne(i))
			}
			var stop atomic.Bool
			var wg sync.WaitGroup
			errs := make(chan error, 3)
			for w := range 3 {
				wg.Go(func() {
					for i := 0; !stop.Load(); i++ {
						if err := appendOne(1000*(w+1) + i); err != nil {
							errs <- err
							return
						}
					}
				})
			}
			rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err := r.Rebuild(rctx, name)
			cancel()
			stop.Store(true)
			wg.Wait()
			close(errs)
			for err := range errs {
				require.NoError(t, err)
			}
			require.NoError(t, err, "the rebuild never switched while events were appended")
			st, err := r.Status(ctx, name)
			require.NoError(t, err)
			require.Equal(t, 2, st.Generation)
			f.waitHead(t, name)
			requireCountedOnce(t, r, name, ids)
		})
	}
}
