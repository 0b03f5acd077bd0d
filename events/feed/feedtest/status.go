package feedtest

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// leaseEvents records OnLeaseChange calls.
type leaseEvents chan feed.LeaseEvent

func (l leaseEvents) record(ev feed.LeaseEvent) {
	select {
	case l <- ev:
	default:
		panic("feedtest: more lease events than the test expects")
	}
}

// next returns the next lease event or fails.
func (l leaseEvents) next(t *testing.T) feed.LeaseEvent {
	t.Helper()
	select {
	case ev := <-l:
		return ev
	case <-time.After(waitTimeout):
		t.Fatalf("no lease event within %s", waitTimeout)
		return feed.LeaseEvent{}
	}
}

// onlyStatus returns the status of a Subscriber's only consumer. t may be
// the CollectT of an EventuallyWithT condition.
func onlyStatus(t require.TestingT, sub *feed.Subscriber) feed.ConsumerStatus {
	if h, ok := t.(interface{ Helper() }); ok {
		h.Helper()
	}
	st := sub.Status()
	require.Len(t, st, 1)
	return st[0]
}

func testLeaseStatusAndHook(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	spy := newSpySource(src)
	name := uniqueName("status")
	evA, evB := make(leaseEvents, 16), make(leaseEvents, 16)

	cfgA := config(name, newCommits())
	cfgA.OnLeaseChange = evA.record
	subA, err := feed.NewSubscriber(spy, cfgA)
	require.NoError(t, err)
	t.Cleanup(func() { _ = subA.Close() })
	require.Empty(t, subA.Status(), "no consumer before Subscribe")
	chA := subscribe(t, subA, feed.TopicAll)

	ev := evA.next(t)
	require.Equal(t, feed.LeaseAcquired, ev.Kind)
	require.Equal(t, name, ev.Consumer)
	stA := onlyStatus(t, subA)
	require.Equal(t, feed.LeaseHolding, stA.Lease)
	require.Equal(t, uint64(1), stA.Acquired)
	require.False(t, stA.Degraded())
	require.Equal(t, "holding lease", stA.String())

	cfgB := config(name, newCommits())
	cfgB.OnLeaseChange = evB.record
	subB := newSubscriber(t, spy, cfgB)
	chB := subscribe(t, subB, feed.TopicAll)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, feed.LeaseStandingBy, onlyStatus(c, subB).Lease)
	}, waitTimeout, time.Millisecond, "B must report standing by while A holds the lease")

	// The database goes away: both report it, with the error and since when.
	before := time.Now()
	spy.cps.unreachable.Store(true)
	for _, sub := range []*feed.Subscriber{subA, subB} {
		// Wait for the injected error itself: on a loaded machine a real
		// failure (a renewal running past its timeout) can start the
		// degraded spell a moment earlier.
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			st := onlyStatus(c, sub)
			assert.True(c, st.Degraded(), "status %s", st)
			assert.ErrorIs(c, st.LastError, errUnreachable)
		}, waitTimeout, time.Millisecond)
		st := onlyStatus(t, sub)
		require.ErrorIs(t, st.LastError, errUnreachable)
		require.False(t, st.DegradedSince.Before(before.Add(-time.Second)))
		require.NotZero(t, st.Failures)
		require.Contains(t, st.String(), "degraded since ")
		require.Contains(t, st.String(), errUnreachable.Error())
	}
	require.Equal(t, feed.LeaseHolding, onlyStatus(t, subA).Lease, "a short outage must not cost the lease")
	spy.cps.unreachable.Store(false)
	for _, sub := range []*feed.Subscriber{subA, subB} {
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			st := onlyStatus(c, sub)
			assert.False(c, st.Degraded(), "status %s", st)
		}, waitTimeout, time.Millisecond, "the first successful call must clear the degraded state")
		require.NoError(t, onlyStatus(t, sub).LastError)
	}

	// A hands over: its hook says released, B's says acquired.
	require.NoError(t, subA.Close())
	requireClosed(t, chA)
	require.Equal(t, feed.LeaseReleased, evA.next(t).Kind)
	stA = onlyStatus(t, subA)
	require.Equal(t, feed.LeaseStopped, stA.Lease)
	require.Equal(t, uint64(1), stA.Released)
	ev = evB.next(t)
	require.Equal(t, feed.LeaseAcquired, ev.Kind)
	require.Equal(t, feed.LeaseHolding, onlyStatus(t, subB).Lease)
	requireNoMessage(t, chB, "nothing was appended")
}
