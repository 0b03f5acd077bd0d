package projections_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestSwitchWakesHaltedLiveProcessor checks that a rebuild's switch wakes
// the live processor halted in the same process at once. The switch
// deletes the halt in its own unit, so the live processor's Resume after
// it finds no halt left to delete; the halted partition must be woken all
// the same, not left for its next look at the store, which with the
// StatusPollInterval set here would come after the test's deadline.
func TestSwitchWakesHaltedLiveProcessor(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			// The first generation's handler fails on "poison": the rebuild is the fix.
			p := projections.New("woken", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Deposited) error {
				if e.Account == "poison" && tx.Generation() == 1 {
					return errors.New("bug")
				}
				t := tx.Table("t")
				n, _, err := projections.Get[int](ctx, t, e.Account)
				if err != nil {
					return err
				}
				return t.Put(ctx, e.Account, n+e.Amount)
			})
			halted := make(chan *projections.HaltedError, 1)
			r := f.start(t, projections.RunnerConfig{
				Projections: []*projections.Projection{p}, MaxAttempts: 2,
				OnHalt:             func(h *projections.HaltedError) { halted <- h },
				StatusPollInterval: time.Hour, // only a wake resumes the halted partition in time
			})
			want := 0
			deposit := func(acct string, amt int) events.Token {
				if acct == "a" {
					want += amt
				}
				return f.append(t, "s-"+acct, Deposited{acct, amt}).Token
			}
			for range 1 + rand.IntN(3) {
				deposit("a", 1+rand.IntN(10))
			}
			deposit("poison", 2)
			for range rand.IntN(3) {
				deposit("a", 1+rand.IntN(10))
			}
			await(t, chanOf(halted), "the halt")

			require.NoError(t, r.Rebuild(ctx, "woken"))
			st, err := r.Status(ctx, "woken")
			require.NoError(t, err)
			require.Equal(t, projections.StateRunning, st.State, "the switch cleared the old generation's halt")
			require.Equal(t, 2, st.Generation)
			f.waitFor(t, deposit("a", 10), "woken")
			got, _, err := projections.Get[int](ctx, r.View("woken").Table("t"), "a")
			require.NoError(t, err)
			require.Equal(t, want, got, "the live processor carries on in the new generation")
		})
	}
}
