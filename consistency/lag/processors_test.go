package lag_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/clocktest"
	"github.com/converge-es/converge/internal/pgtest"
)

// lagStore is a store a Monitor can watch and processors can run on.
type lagStore interface {
	events.Store
	feed.Source
	feed.Inspector
}

// TestPartitionedProcessorsAreReportedOnce: a processor that ran unsplit,
// then at random partition counts, leaves checkpoints of every count in
// the store. A Monitor listing every consumer reports it once, under its
// name, at its current partitions, and leaves out the checkpoints the
// earlier counts left behind (which no longer move, and would breach for
// ever); one told the processor's name alone finds its partitions the
// same way. A consumer without a processor record is listed as it is.
func TestPartitionedProcessorsAreReportedOnce(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for name, mk := range lagStores() {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			rng := rand.New(rand.NewPCG(seed, 11))
			store, clock := mk(t)
			counts := []int{1}
			for len(counts) < 3 {
				if n := 2 + rng.IntN(5); n != counts[len(counts)-1] {
					counts = append(counts, n)
				}
			}
			t.Logf("partition counts %v", counts)
			var head events.Token
			for i, n := range counts {
				for j := range 3 + rng.IntN(6) {
					res, err := store.Append(ctx, fmt.Sprintf("order-%d-%d", i, j), events.NoStream, rawEvent(j))
					require.NoError(t, err)
					head = res.Token
				}
				runUntil(t, store, &feed.ProcessorConfig{Name: "orders", Partitions: n}, head)
			}
			runUntil(t, store, &feed.ProcessorConfig{Name: "other"}, head)
			first, err := store.ReadAll(ctx, events.Token{}, 1)
			require.NoError(t, err)
			commitAt(t, store.Checkpoints(), "legacy", first[0].Token) // no processor record
			// "stalled" ran unsplit, then was split, and its partitions never
			// started: it is still reported, where they will start.
			commitAt(t, store.Checkpoints(), "stalled", first[0].Token)
			u, err := store.Checkpoints().Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, u.Rows().Put(u.Context(ctx), feed.RuntimeNamespace, feed.ProcessorsTable, "stalled",
				json.RawMessage(fmt.Sprintf(`{"partitions":%d}`, 2+rng.IntN(5))), first[0].Token))
			require.NoError(t, u.Commit(u.Context(ctx)))

			// A minute on, whatever is behind is far past its SLA.
			clock.Advance(time.Minute)
			mon, err := lag.NewMonitor(store, &lag.Config{Clock: clock, Logger: slog.New(slog.DiscardHandler)})
			require.NoError(t, err)
			reports, err := mon.Check(ctx)
			require.NoError(t, err)
			var names []string
			for _, r := range reports {
				names = append(names, r.Name)
				if r.Name == "legacy" {
					require.True(t, r.Breached, "a consumer without a record is reported as it is")
					continue
				}
				if r.Name == "stalled" {
					require.Equal(t, first[0].Token, r.Checkpoint, "a split processor whose partitions never ran stands where it was")
					require.True(t, r.Breached, "a split processor whose partitions never ran is behind")
					continue
				}
				require.Equal(t, head, r.Checkpoint, "%s stands at its current partitions", r.Name)
				require.False(t, r.Breached, "%s: %s", r.Name, r.Reason)
			}
			require.Equal(t, []string{"legacy", "orders", "other", "stalled"}, names)

			named, err := lag.NewMonitor(store, &lag.Config{
				Clock: clock, Logger: slog.New(slog.DiscardHandler),
				Projections: []lag.Target{{Name: "orders"}},
			})
			require.NoError(t, err)
			reports, err = named.Check(ctx)
			require.NoError(t, err)
			require.Len(t, reports, 1)
			require.Equal(t, head, reports[0].Checkpoint)
			require.False(t, reports[0].Breached, reports[0].Reason)
		})
	}
}

// lagStores returns, by name, builders of the stores a Monitor is tested
// on, each with the clock its events are recorded by, closed at cleanup.
func lagStores() map[string]func(t *testing.T) (lagStore, *clocktest.Clock) {
	return map[string]func(t *testing.T) (lagStore, *clocktest.Clock){
		"memory": func(t *testing.T) (lagStore, *clocktest.Clock) {
			t.Helper()
			clock := clocktest.New(t0)
			st, err := memstore.New(&memstore.Config{Clock: clock})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return st, clock
		},
		"postgres": func(t *testing.T) (lagStore, *clocktest.Clock) {
			t.Helper()
			db := pgtest.New(t, nil)
			st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return st, clocktest.New(time.Now()) // events are recorded by the server's clock
		},
	}
}

// runUntil runs a processor of cfg with a handler that does nothing until
// its position reaches tok, then stops it (releasing its leases).
func runUntil(t *testing.T, src feed.Source, cfg *feed.ProcessorConfig, tok events.Token) {
	t.Helper()
	p, err := feed.NewProcessor(src, cfg, func(context.Context, events.Envelope) error { return nil })
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.WithoutCancel(t.Context()))
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	require.Eventually(t, func() bool {
		pos, err := p.Position(ctx)
		return err == nil && !pos.Before(tok)
	}, 30*time.Second, 5*time.Millisecond, "processor %s never reached %s", cfg.Name, tok)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		require.NoError(t, err, "Run ends by its context")
	}
	require.NoError(t, p.Close())
}
