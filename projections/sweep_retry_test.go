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

// consumersFailures is a source whose consumer listing fails while fail
// is above zero, as a store that does not answer as a runner starts;
// failed counts the failures.
type consumersFailures struct {
	feed.Source
	feed.Inspector
	fail, failed atomic.Int64
}

func (s *consumersFailures) Consumers(ctx context.Context) ([]feed.ConsumerInfo, error) {
	if s.fail.Add(-1) >= 0 {
		s.failed.Add(1)
		return nil, errors.New("connection refused (injected)")
	}
	return s.Inspector.Consumers(ctx)
}

// TestLeftBehindRebuildCheckpointIsSweptOnceListable: a rebuild checkpoint
// left behind by a process that stopped (here written by hand) is deleted
// by a runner that starts, even when the store cannot list the
// checkpoints at its first pass: the sweep waits for a pass that can.
func TestLeftBehindRebuildCheckpointIsSweptOnceListable(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			p := projections.New("swept", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Renamed) error {
				return tx.Table("names").Put(ctx, e.Account, e.Name)
			})
			tok := f.append(t, "acct-a", Renamed{"a", "n-0"}).Token
			const leftover = "swept@rebuild-1"
			cps := f.source.Checkpoints()
			l, err := cps.Acquire(ctx, leftover, "a process that died", time.Minute)
			require.NoError(t, err)
			require.NoError(t, cps.Advance(ctx, l, tok))
			require.NoError(t, cps.Release(ctx, l))

			in, ok := f.source.(feed.Inspector)
			require.True(t, ok)
			flaky := &consumersFailures{Source: f.source, Inspector: in}
			flaky.fail.Store(1)
			f.start(t, projections.RunnerConfig{Source: flaky, Store: f.store, Projections: []*projections.Projection{p}})
			require.EventuallyWithT(t, func(c *assert.CollectT) {
				cs, err := in.Consumers(ctx)
				require.NoError(c, err)
				for _, cons := range cs {
					assert.NotEqual(c, leftover, cons.Name, "a consumer still listed")
				}
			}, waitTimeout, 10*time.Millisecond, "the left-behind checkpoint is deleted")
			require.EqualValues(t, 1, flaky.failed.Load())
		})
	}
}
