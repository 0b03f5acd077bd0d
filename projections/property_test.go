package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestPropertyReplayAndDuplicatesMatchCleanPass checks, over random event
// sequences, that the read model after a clean pass equals the read model
// after (a) every event was delivered twice (Watermill's Duplicator runs
// the handler twice per delivery), (b) a second runner started over the
// finished one (nothing is applied again), and (c) a rebuild beside. The
// balances projection counts the events applied to each row, so any
// double application shows.
func TestPropertyReplayAndDuplicatesMatchCleanPass(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			iterations := 40
			if b.name == "postgres" {
				iterations = 4 // each iteration migrates a schema
			}
			for i := range iterations {
				seed := uint64(i + 1)
				t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
					f := b.setup(t)
					rng := rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15))
					toks := appendRandom(t, f, rng)
					head := toks[len(toks)-1]

					// pass runs one runner until it has committed the
					// head, and returns the read model.
					pass := func(name string, until events.Token, mw ...message.HandlerMiddleware) []projections.Row {
						t.Helper()
						c := newCommits()
						r := f.newRunner(t, projections.RunnerConfig{
							Projections: []*projections.Projection{balances(name, nil)},
							Middleware:  mw,
							OnCommitted: c.record,
						})
						require.NoError(t, r.Start(context.Background()))
						defer stop(t, r)
						c.wait(t, name, until)
						return snapshot(t, r, name, "accounts")
					}

					clean := pass("clean", head)
					require.NotEmpty(t, clean, "seed %d", seed)
					require.Equal(t, clean, pass("duplicated", head, middleware.Duplicator), "(a) duplicated deliveries, seed %d", seed)

					require.Equal(t, clean, pass("restarted", head), "seed %d", seed)
					var mw []message.HandlerMiddleware
					if rng.IntN(2) == 0 {
						mw = append(mw, middleware.Duplicator)
					}
					// An unhandled event gives the restarted runner something
					// to move past, so its commit can be awaited.
					noise := f.append(t, "noise", Noise{1})
					require.Equal(t, clean, pass("restarted", noise.Token, mw...), "(b) restarted, seed %d", seed)

					r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("clean", nil)}})
					require.NoError(t, r.Rebuild(context.Background(), "clean"))
					require.Equal(t, clean, snapshot(t, r, "clean", "accounts"), "(c) rebuilt, seed %d", seed)
				})
			}
		})
	}
}

// appendRandom appends a random sequence of events over a few accounts, in
// random batches, and returns each event's token in feed order.
func appendRandom(t *testing.T, f *fixture, rng *rand.Rand) []events.Token {
	t.Helper()
	n := 15 + rng.IntN(40)
	accounts := 1 + rng.IntN(4)
	var toks []events.Token
	for len(toks) < n {
		acct := accountName(rng.IntN(accounts))
		batch := make([]events.Event, 1+rng.IntN(3))
		for i := range batch {
			var data any
			switch p := rng.IntN(100); {
			case p < 40:
				data = Deposited{acct, 1 + rng.IntN(100)}
			case p < 60:
				data = Withdrawn{acct, 1 + rng.IntN(50)}
			case p < 75:
				data = Renamed{acct, fmt.Sprint("name-", rng.IntN(1000))}
			case p < 85:
				data = Closed{acct}
			default:
				data = Noise{rng.IntN(10)}
			}
			batch[i] = events.Event{Data: data}
		}
		res, err := f.store.Append(context.Background(), "acct-"+acct, events.AnyVersion, batch...)
		require.NoError(t, err)
		toks = append(toks, res.Tokens...)
	}
	return toks
}
