package projections_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// Total is the rebuilt projection's row.
type Total struct {
	Amount int `json:"amount"`
}

func TestRebuildBesideWithoutEmptyReads(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var factor atomic.Int64 // the "code" of the handler: changed by a deploy
			factor.Store(1)
			p := projections.New("totals", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				return tx.Table("totals").Put(ctx, e.Account, Total{Amount: e.Amount * int(factor.Load())})
			})
			// Hold the rebuild's processor before it delivers anything, so
			// readers can be checked while the rebuild is under way. (Holding
			// it inside a unit would, on PostgreSQL, hold the whole feed back:
			// see the pgstore doc.)
			gate := make(chan struct{})
			building := newOnce()
			r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})
			projections.SetRebuildHook(r, func(ctx context.Context, processor string) {
				if processor == "totals@rebuild-2" {
					building.fire()
					select {
					case <-gate:
					case <-ctx.Done():
					}
				}
			})
			require.NoError(t, r.Start(ctx))
			t.Cleanup(func() { stop(t, r) })
			const n = 5
			for i := range n {
				f.append(t, "s-"+accountName(i), Deposited{accountName(i), i + 1})
			}
			f.waitHead(t, "totals")

			// A reader hammers the read model through the whole rebuild: every
			// read must find every row, with the old or the new value.
			stopReading := make(chan struct{})
			var reads atomic.Int64
			var readerErr error
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stopReading:
						return
					default:
					}
					for i := range n {
						got, ok, err := projections.Get[Total](ctx, r.View("totals").Table("totals"), accountName(i))
						old, rebuilt := i+1, (i+1)*10
						if err != nil || !ok || (got.Amount != old && got.Amount != rebuilt) {
							readerErr = fmt.Errorf("read %s: %+v found=%v: %w", accountName(i), got, ok, err)
							return
						}
						reads.Add(1)
					}
				}
			})

			factor.Store(10) // deploy the fixed handler, then rebuild
			done := make(chan error, 1)
			go func() { done <- r.Rebuild(ctx, "totals") }()
			await(t, building.C(), "the rebuild to start")

			for i := range n {
				got, ok, err := projections.Get[Total](ctx, r.View("totals").Table("totals"), accountName(i))
				require.NoError(t, err)
				require.True(t, ok)
				require.Equal(t, i+1, got.Amount, "readers see the live generation while the rebuild runs")
			}
			st, err := r.Status(ctx, "totals")
			require.NoError(t, err)
			require.Equal(t, 1, st.Generation)
			require.NotNil(t, st.Rebuild)
			require.Equal(t, 2, st.Rebuild.Generation)
			require.ErrorIs(t, r.Rebuild(ctx, "totals"), projections.ErrRebuildInProgress)

			// The live generation keeps up meanwhile.
			late := f.append(t, "s-late", Deposited{"late", 7})
			f.waitFor(t, late.Token, "totals")
			got, ok := getTotal(t, r, "late")
			require.True(t, ok)
			require.Equal(t, 70, got.Amount)

			close(gate)
			select {
			case err := <-done:
				require.NoError(t, err)
			case <-time.After(waitTimeout):
				t.Fatal("Rebuild did not return")
			}
			close(stopReading)
			wg.Wait()
			require.NoError(t, readerErr)
			require.Positive(t, reads.Load())

			for i := range n {
				got, ok := getTotal(t, r, accountName(i))
				require.True(t, ok)
				require.Equal(t, (i+1)*10, got.Amount, "complete data after the switch")
			}
			got, ok = getTotal(t, r, "late")
			require.True(t, ok)
			require.Equal(t, 70, got.Amount)
			st, err = r.Status(ctx, "totals")
			require.NoError(t, err)
			require.Equal(t, 2, st.Generation)
			require.Nil(t, st.Rebuild)
			pos, ok := f.tracker.Position("totals")
			require.True(t, ok)
			require.False(t, pos.Before(late.Token))
			old, err := f.source.Rows().List(ctx, "projection/totals/1", "totals", feed.RowQuery{})
			require.NoError(t, err)
			require.Empty(t, old, "the old generation was dropped")
			inspector, ok := f.source.(feed.Inspector)
			require.True(t, ok)
			consumers, err := inspector.Consumers(ctx)
			require.NoError(t, err)
			for _, c := range consumers {
				require.NotContains(t, c.Name, "@rebuild-", "the rebuild's checkpoint was deleted, so it cannot lag forever")
			}

			// The live consumer carries on with the new generation.
			after := f.append(t, "s-after", Deposited{"after", 2})
			f.waitFor(t, after.Token, "totals")
			got, ok = getTotal(t, r, "after")
			require.True(t, ok)
			require.Equal(t, 20, got.Amount)
		})
	}
}

func TestRebuildOfEmptyProjectionSwitchesAtOnce(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("empty", nil)}})
			f.append(t, "s-1", Noise{1})
			f.waitHead(t, "empty")
			require.NoError(t, r.Rebuild(context.Background(), "empty"))
			st, err := r.Status(context.Background(), "empty")
			require.NoError(t, err)
			require.Equal(t, 2, st.Generation)
			res := f.append(t, "s-1", Deposited{"a", 3})
			f.waitFor(t, res.Token, "empty")
			a, ok := account(t, r, "empty", "a")
			require.True(t, ok)
			require.Equal(t, 3, a.Balance)
		})
	}
}

func TestResetReplaysFromToken(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			calls := newCounter()
			// An upsert-style projection: the latest name of each account.
			p := projections.New("latest_name", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Renamed) error {
				calls.add()
				return tx.Table("names").Put(ctx, e.Account, map[string]any{"name": e.Name, "version": env.Version})
			})
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})
			var toks []events.Token
			for i := range 5 {
				toks = append(toks, f.append(t, "acct-"+accountName(i%2), Renamed{accountName(i % 2), fmt.Sprint("name-", i)}).Token)
			}
			f.waitHead(t, "latest_name")
			before := snapshot(t, r, "latest_name", "names")
			require.Equal(t, 5, calls.load())

			// While a reset replays, readers see rows step through older
			// states: wait for the replay to apply and commit the head
			// before comparing. Awaited by the handler's calls: a wait on
			// the position alone could return on a late report of the
			// earlier pass's last commit.
			replayed := func(want int) {
				t.Helper()
				require.Eventually(t, func() bool { return calls.load() >= want }, waitTimeout, 5*time.Millisecond)
				f.awaitStored(t, "latest_name", toks[4])
				require.Equal(t, want, calls.load(), "the events after the token were applied again, once")
				require.Equal(t, before, snapshot(t, r, "latest_name", "names"))
			}
			require.NoError(t, r.Reset(ctx, "latest_name", toks[1]))
			replayed(8)
			require.NoError(t, r.Reset(ctx, "latest_name", events.Token{}))
			replayed(13)
		})
	}
}

func getTotal(t *testing.T, r *projections.Runner, key string) (Total, bool) {
	t.Helper()
	got, ok, err := projections.Get[Total](context.Background(), r.View("totals").Table("totals"), key)
	require.NoError(t, err)
	return got, ok
}
