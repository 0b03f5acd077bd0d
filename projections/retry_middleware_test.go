package projections_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestRetryMiddlewareNeverAppliesTwice: handlers that write and then fail a
// random number of times, under Watermill's Retry middleware (which calls
// the handler again in the same delivery, so in the same unit of work),
// still apply every event exactly once: a failed call's writes never
// commit beside a later call's.
func TestRetryMiddlewareNeverAppliesTwice(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			rng := rand.New(rand.NewPCG(seed, seed))
			f := b.setup(t)

			n, accounts := 3+rng.IntN(10), 1+rng.IntN(3)
			want := map[string]Account{}
			deposits := make([]Deposited, n)
			// failures holds, by amount (unique per deposit), how many
			// more calls fail; all set before anything is delivered.
			failures := map[int]int{}
			for i := range deposits {
				d := Deposited{Account: accountName(rng.IntN(accounts)), Amount: i + 1}
				deposits[i] = d
				failures[d.Amount] = rng.IntN(4)
				w := want[d.Account]
				w.Balance += d.Amount
				w.Count++
				want[d.Account] = w
			}
			var mu sync.Mutex
			p := projections.New("retried", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				tb := tx.Table("accounts")
				a, _, err := projections.Get[Account](ctx, tb, e.Account)
				if err != nil {
					return err
				}
				a.Balance += e.Amount
				a.Count++
				if err := tb.Put(ctx, e.Account, a); err != nil {
					return err
				}
				mu.Lock()
				defer mu.Unlock()
				if failures[e.Amount] > 0 {
					failures[e.Amount]--
					return errors.New("transient failure after writing")
				}
				return nil
			})
			retry := middleware.Retry{MaxRetries: 1 + rng.IntN(3), InitialInterval: time.Millisecond}
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{p},
				Middleware:  []message.HandlerMiddleware{retry.Middleware},
				// Never halts: a deposit fails at most 3 times.
				MaxAttempts: 10,
			})
			for _, d := range deposits {
				f.append(t, d.Account, d)
			}
			f.waitHead(t, "retried")
			for acct, w := range want {
				got, ok := account(t, r, "retried", acct)
				require.True(t, ok, "account %s", acct)
				require.Equal(t, w, got, "account %s: every deposit applied exactly once", acct)
			}
		})
	}
}
