package saga_test

import (
	"context"
	"crypto/sha256"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestLargeFailedMessageKeepsItsRowSmallAndRetriesWhole: a step that
// fails for good (saga.Permanent, or an error past Config.MaxAttempts) on
// an event far larger than 16 KiB fails its instance without failing the
// unit, and the instance row keeps no more than 16 KiB of the payload
// (package doc: "A parked, failed or queued message keeps a payload of up
// to 16 KiB in its row; a larger one ... is read back from its stream when
// the message runs"). Engine.Retry then runs the step with every byte of
// the payload. Payload sizes are random, from just over 16 KiB up to the
// largest event the store takes.
func TestLargeFailedMessageKeepsItsRowSmallAndRetriesWhole(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	const inline = 16 << 10
	// The payload is {"order_id":"1","reason":"..."}: 29 bytes around
	// the reason.
	const around = 29
	for _, how := range []string{"permanent", "max_attempts"} {
		t.Run(how, func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
				ctx := context.Background()
				rng := rand.New(rand.NewPCG(seed, 16))
				size := inline + 1 + rng.IntN(events.DefaultMaxPayloadBytes-inline-around)
				reason := randomPlainText(rng, size)
				maxAttempts := 1 + rng.IntN(3)
				t.Logf("reason of %d bytes, MaxAttempts %d", size, maxAttempts)

				healthy := false
				var seen []string // the reason of every run of the step, as it got it
				s := saga.New[orderState]("large_failed", &saga.Config[orderState]{MaxAttempts: maxAttempts, RetryBackoff: time.Second, MaxRetryBackoff: time.Second})
				saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
				saga.On(s, byOrder[PaymentDeclined], func(st *saga.Step[orderState], e PaymentDeclined) error {
					seen = append(seen, e.Reason)
					switch {
					case healthy:
						return st.Send(NotifyCustomer{OrderID: e.OrderID, Text: fmt.Sprintf("%d %x", len(e.Reason), sha256.Sum256([]byte(e.Reason)))})
					case how == "permanent":
						return saga.Permanent(fmt.Errorf("refused a reason of %d bytes", len(e.Reason)))
					default:
						return fmt.Errorf("failed on a reason of %d bytes", len(e.Reason))
					}
				})
				fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
				fx.When(placed("1", 1))

				require.NoError(t, fx.TryWhen(ev("1", PaymentDeclined{OrderID: "1", Reason: reason})), "a failed step never fails its unit")
				if how == "max_attempts" {
					for range maxAttempts {
						fx.Advance(time.Second) // each retry is due a backoff later
					}
				}
				fx.ExpectCommands()
				info := fx.Instance("large_failed", "1")
				require.Equal(t, saga.StatusFailed, info.Status)
				wantRuns := 1
				if how == "max_attempts" {
					wantRuns = maxAttempts
				}
				require.Len(t, seen, wantRuns, "the step ran once per attempt, then the instance failed")
				for i, got := range seen {
					require.True(t, got == reason, "attempt %d got a reason of %d bytes, want the whole %d", i+1, len(got), len(reason))
				}

				// The instance row holds the failed message, without the
				// payload past 16 KiB.
				row, ok, err := fx.Store().Rows().Get(ctx, "converge.saga", "instances", "large_failed/1", feed.LockNone)
				require.NoError(t, err)
				require.True(t, ok, "the instance row is there")
				require.Less(t, len(row.Value), 2*inline, "the failed instance's row holds at most 16 KiB of the payload besides a small state; it holds %d bytes", len(row.Value))
				require.NotContains(t, string(row.Value), reason[:inline+1], "the payload is not kept in the row")

				healthy = true
				require.NoError(t, fx.Engine().Retry(ctx, "large_failed", "1"))
				require.NoError(t, fx.Settle())
				fx.ExpectCommands(NotifyCustomer{OrderID: "1", Text: fmt.Sprintf("%d %x", len(reason), sha256.Sum256([]byte(reason)))})
				require.True(t, seen[len(seen)-1] == reason, "the retried step got a reason of %d bytes, want the whole %d", len(seen[len(seen)-1]), len(reason))
				fx.ExpectStatus("large_failed", "1", saga.StatusRunning)
				require.Equal(t, 1, countKind(fx.History("large_failed", "1"), saga.KindRetried))
			})
		})
	}
}

// randomPlainText returns n bytes of random printable ASCII that JSON keeps as
// they are (no quote, no backslash), so the payload is n bytes longer than
// the text's frame.
func randomPlainText(rng *rand.Rand, n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;-_!?()"
	var b strings.Builder
	b.Grow(n)
	for range n {
		b.WriteByte(alphabet[rng.IntN(len(alphabet))])
	}
	return b.String()
}
