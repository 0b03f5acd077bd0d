package feedtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// testHolderGivesUpWhenRenewalsFail: a holder that cannot renew its lease
// for a whole LeaseTTL (its database unreachable) gives the lease up by
// itself, reports it lost, and delivers nothing more until it holds a
// lease again: another process may hold it by then, and a holder that
// went on would run handlers beside it. Once the store answers again, it
// takes the lease back and delivers what was appended meanwhile.
func testHolderGivesUpWhenRenewalsFail(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	spy := newSpySource(src)
	name := uniqueName("renewloss")
	ev := make(leaseEvents, 16)
	cfg := config(name, newCommits())
	cfg.LeaseTTL, cfg.RenewInterval = 300*time.Millisecond, 20*time.Millisecond
	cfg.OnLeaseChange = ev.record
	sub := newSubscriber(t, spy, cfg)
	ch := subscribe(t, sub, feed.TopicAll)
	require.Equal(t, feed.LeaseAcquired, ev.next(t).Kind)

	spy.cps.unreachable.Store(true)
	lost := ev.next(t)
	require.Equal(t, feed.LeaseLost, lost.Kind)
	require.ErrorIs(t, lost.Err, feed.ErrLeaseLost)
	require.ErrorIs(t, lost.Err, errUnreachable, "the loss says why")
	// Measured from the last acquire or renewal that worked (on a loaded
	// machine it can be well before the cut), not from the cut.
	confirmed := spy.cps.confirmed.Load()
	require.NotZero(t, confirmed, "the lease was acquired")
	require.GreaterOrEqual(t, time.Since(time.Unix(0, confirmed)), cfg.LeaseTTL, "not before renewals failed for a whole LeaseTTL")
	require.NotEqual(t, feed.LeaseHolding, onlyStatus(t, sub).Lease)

	appendTo(t, s, "order-1", 1)
	all := awaitAll(t, s, 1)
	// Two more failed calls after the append: the consumer is trying to
	// get a lease again, not delivering.
	failures := onlyStatus(t, sub).Failures
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.GreaterOrEqual(c, onlyStatus(c, sub).Failures, failures+2, "failed calls since the append")
	}, waitTimeout, time.Millisecond)
	requireNoMessage(t, ch, "a consumer without a lease delivers nothing")

	spy.cps.unreachable.Store(false)
	require.Equal(t, feed.LeaseAcquired, ev.next(t).Kind)
	msg := receive(t, ch)
	require.Equal(t, all[0].ID, msg.UUID)
	require.True(t, msg.Ack())
}
