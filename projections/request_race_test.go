package projections_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestFirstRequestsRaceOneWins: two operators asking at once for the
// first request a projection ever gets record one; the other is told a
// request is pending, rather than both succeeding and one silently
// overwriting the other.
func TestFirstRequestsRaceOneWins(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			f := b.setup(t)
			const n = 8
			var projs []*projections.Projection
			for i := range n {
				p := projections.New(fmt.Sprint("raced_", i), nil)
				projections.On(p, func(context.Context, *projections.Tx, events.Envelope, Renamed) error { return nil })
				projs = append(projs, p)
			}
			// A runner gives the projections their state, then stops:
			// nobody carries the requests out while they race.
			r := f.newRunner(t, projections.RunnerConfig{Projections: projs})
			require.NoError(t, r.Start(ctx))
			stop(t, r)
			for i := range n {
				name := fmt.Sprint("raced_", i)
				errs := make([]error, 2)
				var wg sync.WaitGroup
				for j := range errs {
					wg.Go(func() { _, errs[j] = projections.RequestReset(ctx, f.source, name, events.Token{}) })
				}
				wg.Wait()
				won := 0
				for _, err := range errs {
					if err == nil {
						won++
						continue
					}
					require.ErrorIs(t, err, projections.ErrRequestPending, name)
				}
				require.Equal(t, 1, won, "%s: exactly one request recorded: %v", name, errs)
			}
		})
	}
}
