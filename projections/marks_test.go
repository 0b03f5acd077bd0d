package projections_test

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// TestStrongProjectionRunsOncePerStore: a second Runner in the process
// cannot run a strong projection the first runs on the same store object
// (each would install an append hook, and every event would be applied
// twice); it says so, and may once the first has stopped.
func TestStrongProjectionRunsOncePerStore(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			var reject atomic.Bool
			first := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{strongBalances("sb_once", &reject)}})
			require.NoError(t, first.Start(context.Background()))
			second := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{strongBalances("sb_once", &reject)}})
			require.ErrorContains(t, second.Start(context.Background()), `strong projection "sb_once" already runs on this store in this process`)

			f.append(t, "acct-1", Deposited{"a", 10})
			a, ok := account(t, first, "sb_once", "a")
			require.True(t, ok)
			require.Equal(t, 1, a.Count, "applied once")

			stop(t, first)
			require.NoError(t, second.Start(context.Background()), "free once the first stopped")
			t.Cleanup(func() { stop(t, second) })
			f.append(t, "acct-1", Deposited{"a", 5})
			a, ok = account(t, second, "sb_once", "a")
			require.True(t, ok)
			require.Equal(t, Account{Balance: 15, Count: 2}, Account{Balance: a.Balance, Count: a.Count})
		})
	}
}

// TestForwardedEventsCarryNoMarks: an event stored from a delivered
// message (feed.Publisher, the forwarding pattern) is a new event no hook
// applied: the mark the message carried is dropped, so the projections it
// named apply the new event instead of skipping it.
func TestForwardedEventsCarryNoMarks(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("plain_fwd", nil)}})
			pub, err := feed.NewPublisher(f.store, nil)
			require.NoError(t, err)
			payload, err := json.Marshal(Deposited{"a", 100})
			require.NoError(t, err)
			msg := message.NewMessage("forwarded-1", payload)
			msg.Metadata.Set(feed.MetaType, "deposited")
			msg.Metadata.Set(projections.AppliedMetadataKey, "plain_fwd")
			require.NoError(t, pub.Publish("acct-1", msg))
			f.waitHead(t, "plain_fwd")
			a, ok := account(t, r, "plain_fwd", "a")
			require.True(t, ok, "the forwarded deposit was applied")
			require.Equal(t, 100, a.Balance)
		})
	}
}
