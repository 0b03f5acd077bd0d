package feedtest

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// suiteTest is one behaviour the Subscriber and Publisher must have over
// every Source.
type suiteTest struct {
	name string
	fn   func(t *testing.T, s events.Store, src feed.Source)
}

var suiteTests = []suiteTest{
	{"ReplayAfterLostCommitReply", testReplayAfterLostCommitReply},
	{"DeliversInGlobalOrderWithMetadata", testDeliversInGlobalOrder},
	{"NackRedeliversSameEvent", testNackRedelivers},
	{"CommitBatchSharesOneUnit", testCommitBatch},
	{"ResumesFromCheckpoint", testResumesFromCheckpoint},
	{"OneActiveConsumerPerName", testOneActiveConsumerPerName},
	{"LeaseStatusAndHook", testLeaseStatusAndHook},
	{"StandbyTakesOverExpiredLease", testTakeoverAfterExpiry},
	{"LeaseLostWhileHandling", testLeaseLostWhileHandling},
	{"HolderGivesUpWhenRenewalsFail", testHolderGivesUpWhenRenewalsFail},
	{"CategoryTopics", testCategoryTopics},
	{"CategoryAdvancesPastOthers", testCategoryAdvancesPastOthers},
	{"PendingBackoff", testPendingBackoff},
	{"FallbackPollWhilePushUnhealthy", testFallbackPoll},
	{"SafetyPollWhenWakeIsLost", testSafetyPoll},
	{"NoUnitOpenWhileIdle", testNoUnitOpenWhileIdle},
	{"ContextEndClosesSubscription", testContextEndClosesSubscription},
	{"ContextEndGivesUpAHeldMessage", testContextEndGivesUpAHeldMessage},
	{"CloseReleasesAndClosesChannels", testClose},
	{"CloseDoesNotWaitForAHeldMessage", testCloseWithMessageHeld},
	{"SameOwnerNeverSharesALease", testSameOwnerNeverSharesALease},
	{"RouterHandlerErrorRedelivers", testRouter},
	{"PublishJSONRoundTrip", testPublishJSON},
	{"PublishIsIdempotentPerStream", testPublishIdempotent},
	{"PublishRejectsNonJSON", testPublishRejectsNonJSON},
	{"PublishBase64RoundTrip", testPublishBase64},
	{"PublishStreamFromMetadata", testPublishStreamFromMetadata},
}

// Run runs the feed suite. newSource must return a fresh, empty store and
// its feed.Source for every call. Subtests run in parallel; the processor
// tests run once per delivery mode ("<test>/router", "<test>/direct").
func Run(t *testing.T, newSource NewSourceFunc) {
	t.Helper()
	for _, tc := range append(suiteTests[:len(suiteTests):len(suiteTests)], runTests...) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s, src := newSource(t)
			tc.fn(t, s, src)
		})
	}
	runProcessorTests(t, processorTests, newSource)
}

type ctxKey struct{}

func testDeliversInGlobalOrder(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	meta := events.Metadata{CorrelationID: "corr-1", CausationID: "cause-1", Extra: map[string]string{"tenant": "acme", "note": "ünïcödé"}}
	first := thing(1)
	first.Metadata = meta
	_, err := s.Append(t.Context(), "order-1", events.NoStream, first, thing(2))
	require.NoError(t, err)
	appendTo(t, s, "customer-1", 3)
	appendTo(t, s, "order-2", 4)
	appendTo(t, s, "order-1", 5)
	all := awaitAll(t, s, 5)

	cm := newCommits()
	name := uniqueName("order")
	sub := newSubscriber(t, src, config(name, cm))
	ctx := context.WithValue(t.Context(), ctxKey{}, "value")
	ch, err := sub.Subscribe(ctx, feed.TopicAll)
	require.NoError(t, err)

	for i, want := range all {
		msg := receive(t, ch)
		require.Equal(t, want.ID, msg.UUID, "event %d: delivered out of global order", i)
		require.Equal(t, []byte(want.Payload), []byte(msg.Payload))
		md := msg.Metadata
		require.Equal(t, want.StreamID, md.Get(feed.MetaStreamID))
		require.Equal(t, want.Type, md.Get(feed.MetaType))
		require.Equal(t, want.ID, md.Get(feed.MetaEventID))
		require.Equal(t, want.Token.String(), md.Get(feed.MetaToken))
		require.Equal(t, want.Metadata.CorrelationID, md.Get(feed.MetaCorrelationID))
		require.Equal(t, want.Metadata.CausationID, md.Get(feed.MetaCausationID))
		for k, v := range want.Metadata.Extra {
			require.Equal(t, v, md.Get(k), "extra %q", k)
		}

		tok, err := feed.TokenFromMessage(msg)
		require.NoError(t, err)
		require.Equal(t, want.Token, tok)
		env, err := feed.EnvelopeFromMessage(msg)
		require.NoError(t, err)
		require.True(t, want.RecordedAt.Equal(env.RecordedAt), "RecordedAt %s, want %s", env.RecordedAt, want.RecordedAt)
		env.RecordedAt = want.RecordedAt
		require.Equal(t, want, env)

		require.Equal(t, "value", msg.Context().Value(ctxKey{}), "messages carry the Subscribe context's values")
		require.NoError(t, msg.Context().Err())
		require.True(t, msg.Ack())
		cm.await(t, name, want.Token)
		select {
		case <-msg.Context().Done():
		case <-time.After(waitTimeout):
			t.Fatal("the message context was not canceled after Ack")
		}
	}
	pos, err := src.Checkpoints().Position(t.Context(), name)
	require.NoError(t, err)
	require.Equal(t, all[len(all)-1].Token, pos)
	require.Equal(t, len(all), cm.count(), "one commit per event")
}

func testNackRedelivers(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	appendTo(t, s, "order-1", 1, 2)
	all := awaitAll(t, s, 2)
	cm := newCommits()
	name := uniqueName("nack")
	ch := subscribe(t, newSubscriber(t, src, config(name, cm)), feed.TopicAll)

	first := receive(t, ch)
	require.Equal(t, all[0].ID, first.UUID)
	require.True(t, first.Nack())
	for range 3 {
		again := receive(t, ch)
		require.NotSame(t, first, again, "a redelivery is a fresh message")
		require.Equal(t, first.UUID, again.UUID, "a Nacked event is redelivered with the same UUID")
		require.Equal(t, all[0].Token.String(), again.Metadata.Get(feed.MetaToken), "nothing behind a Nacked event is delivered")
		pos, err := src.Checkpoints().Position(t.Context(), name)
		require.NoError(t, err)
		require.True(t, pos.IsZero(), "a Nack must not move the checkpoint, it is at %s", pos)
		require.Zero(t, cm.count())
		first = again
		require.True(t, again.Nack())
	}
	msg := receive(t, ch)
	require.Equal(t, all[0].ID, msg.UUID)
	require.True(t, msg.Ack())
	cm.await(t, name, all[0].Token)

	msg = receive(t, ch)
	require.Equal(t, all[1].ID, msg.UUID)
	require.True(t, msg.Ack())
	cm.await(t, name, all[1].Token)
}

func testResumesFromCheckpoint(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	for i := range 10 {
		appendTo(t, s, "order-1", i)
	}
	all := awaitAll(t, s, 10)
	cm := newCommits()
	name := uniqueName("restart")

	sub1, err := feed.NewSubscriber(src, config(name, cm))
	require.NoError(t, err)
	ch1, err := sub1.Subscribe(t.Context(), feed.TopicAll)
	require.NoError(t, err)
	for _, want := range all[:4] {
		msg := receive(t, ch1)
		require.Equal(t, want.ID, msg.UUID)
		require.True(t, msg.Ack())
	}
	cm.await(t, name, all[3].Token)
	inFlight := receive(t, ch1) // handed out, not Acked before Close
	require.Equal(t, all[4].ID, inFlight.UUID)
	require.NoError(t, sub1.Close())
	requireClosed(t, ch1)
	select {
	case <-inFlight.Context().Done():
	default:
		t.Fatal("Close must cancel the context of an unacknowledged message")
	}
	require.True(t, inFlight.Nack(), "its handler answers after Close")

	// The restarted consumer starts right after the last commit: the
	// unacknowledged event is delivered again, nothing is skipped.
	ch2 := subscribe(t, newSubscriber(t, src, config(name, cm)), feed.TopicAll)
	var got []string
	for range all[4:] {
		msg := receive(t, ch2)
		got = append(got, msg.UUID)
		require.True(t, msg.Ack())
	}
	require.Equal(t, ids(all[4:]), got)
	cm.await(t, name, all[9].Token)
}

func testOneActiveConsumerPerName(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	spy := newSpySource(src)
	name := uniqueName("single")
	cmA, cmB := newCommits(), newCommits()

	subA, err := feed.NewSubscriber(spy, config(name, cmA))
	require.NoError(t, err)
	t.Cleanup(func() { _ = subA.Close() })
	chA, err := subA.Subscribe(t.Context(), feed.TopicAll)
	require.NoError(t, err)
	appendTo(t, s, "order-1", 1)
	msg := receive(t, chA) // A holds the lease now
	require.True(t, msg.Ack())

	chB := subscribe(t, newSubscriber(t, spy, config(name, cmB)), feed.TopicAll)
	// Wait until B has been refused the lease twice: it is standing by.
	require.Eventually(t, func() bool { return spy.cps.held.Load() >= 2 }, waitTimeout, time.Millisecond)

	appendTo(t, s, "order-1", 2, 3, 4)
	all := awaitAll(t, s, 4)
	for _, want := range all[1:] {
		msg := receive(t, chA)
		require.Equal(t, want.ID, msg.UUID)
		require.True(t, msg.Ack())
	}
	cmA.await(t, name, all[3].Token)
	requireNoMessage(t, chB, "the standby must not deliver while another consumer holds the name")
	require.Zero(t, cmB.count())

	// A's Close releases the lease: B takes over where A stopped.
	require.NoError(t, subA.Close())
	requireClosed(t, chA)
	appendTo(t, s, "order-1", 5)
	all = awaitAll(t, s, 5)
	msg = receive(t, chB)
	require.Equal(t, all[4].ID, msg.UUID, "the standby must resume after the last event A committed")
	require.True(t, msg.Ack())
	cmB.await(t, name, all[4].Token)
}

func testTakeoverAfterExpiry(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	const ttl = 200 * time.Millisecond
	name := uniqueName("expiry")
	cps := src.Checkpoints()
	// A process that took the lease and died: it never renews it.
	dead, err := cps.Acquire(t.Context(), name, "crashed-process", ttl)
	require.NoError(t, err)

	appendTo(t, s, "order-1", 1)
	all := awaitAll(t, s, 1)
	cm := newCommits()
	cfg := config(name, cm)
	cfg.LeaseTTL, cfg.RenewInterval = ttl, ttl/4
	ch := subscribe(t, newSubscriber(t, src, cfg), feed.TopicAll)

	msg := receive(t, ch) // arrives once the dead lease expired
	require.Equal(t, all[0].ID, msg.UUID)
	require.True(t, msg.Ack())
	cm.await(t, name, all[0].Token)

	// The dead holder is fenced off: its generation can no longer commit.
	u, err := cps.Begin(t.Context())
	require.NoError(t, err)
	err = u.Commit(t.Context(), feed.Move{Lease: dead, Position: events.MakeToken(1<<62, 1<<62)})
	require.ErrorIs(t, err, feed.ErrLeaseLost)
	pos, err := cps.Position(t.Context(), name)
	require.NoError(t, err)
	require.Equal(t, all[0].Token, pos)
}

func testLeaseLostWhileHandling(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	const ttl = 300 * time.Millisecond
	name := uniqueName("lost")
	spy := newSpySource(src)
	cmA, cmB := newCommits(), newCommits()
	cfgA := config(name, cmA)
	cfgA.LeaseTTL, cfgA.RenewInterval = ttl, ttl/4
	evA := make(leaseEvents, 16)
	cfgA.OnLeaseChange = evA.record
	cfgB := config(name, cmB)
	cfgB.LeaseTTL, cfgB.RenewInterval = ttl, ttl/4

	appendTo(t, s, "order-1", 1, 2)
	all := awaitAll(t, s, 2)
	subA := newSubscriber(t, spy, cfgA)
	chA := subscribe(t, subA, feed.TopicAll)
	slow := receive(t, chA)
	require.Equal(t, all[0].ID, slow.UUID)

	// A stalls with the message in hand and stops renewing (a long GC pause,
	// a partition); B takes over once A's lease expires.
	spy.cps.pauseRenews.Store(true)
	chB := subscribe(t, newSubscriber(t, src, cfgB), feed.TopicAll)
	msg := receive(t, chB)
	require.Equal(t, all[0].ID, msg.UUID, "the new holder redelivers the event A never committed")

	// A wakes up and Acks: its commit is fenced off, nothing moves.
	require.True(t, slow.Ack())
	select {
	case <-slow.Context().Done():
	case <-time.After(waitTimeout):
		t.Fatal("the stale message's context was not canceled")
	}
	require.Zero(t, cmA.count(), "a consumer that lost its lease must not commit")
	require.Equal(t, feed.LeaseAcquired, evA.next(t).Kind)
	lost := evA.next(t)
	require.Equal(t, feed.LeaseLost, lost.Kind, "the hook must report the loss")
	require.ErrorIs(t, lost.Err, feed.ErrLeaseLost)
	stA := onlyStatus(t, subA)
	require.Equal(t, uint64(1), stA.Lost)
	require.Equal(t, feed.LeaseStandingBy, stA.Lease)

	require.True(t, msg.Ack())
	msg = receive(t, chB)
	require.Equal(t, all[1].ID, msg.UUID)
	require.True(t, msg.Ack())
	cmB.await(t, name, all[1].Token)
	requireNoMessage(t, chA, "a consumer that lost its lease must stop delivering")
	require.Zero(t, cmA.count())
}

func testCategoryTopics(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	streams := []string{"order-1", "orders-1", "order", "customer-1", "order-eu-7", "order-1"}
	for i, stream := range streams {
		appendTo(t, s, stream, i)
	}
	all := awaitAll(t, s, len(streams))
	pick := func(idx ...int) []events.Envelope {
		out := make([]events.Envelope, len(idx))
		for i, j := range idx {
			out[i] = all[j]
		}
		return out
	}
	cm := newCommits()
	name := uniqueName("category")
	// One Subscriber follows several topics, each under its own checkpoint.
	sub := newSubscriber(t, src, config(name, cm))
	for _, tc := range []struct {
		topic string
		want  []events.Envelope
	}{
		{"order", pick(0, 2, 4, 5)},
		{"order-eu", pick(4)},
		{"customer", pick(3)},
		{"", all},
	} {
		ch := subscribe(t, sub, tc.topic)
		var got []events.Envelope
		for range tc.want {
			msg := receive(t, ch)
			env, err := feed.EnvelopeFromMessage(msg)
			require.NoError(t, err)
			got = append(got, env)
			require.True(t, msg.Ack())
		}
		require.Equal(t, ids(tc.want), ids(got), "topic %q", tc.topic)
		cpName := feed.CheckpointName(name, tc.topic)
		cm.await(t, cpName, tc.want[len(tc.want)-1].Token)
		requireNoMessage(t, ch, "topic "+tc.topic+" delivered an event outside its category")
	}
	require.Equal(t, name, feed.CheckpointName(name, feed.TopicAll))
	// Past its last event, a category's checkpoint moves over the events of
	// other categories by Advance, without delivering them.
	last := all[len(all)-1].Token
	cm.await(t, feed.CheckpointName(name, "customer"), last)
	pos, err := src.Checkpoints().Position(t.Context(), feed.CheckpointName(name, "customer"))
	require.NoError(t, err)
	require.Equal(t, last, pos)
}

// testCategoryAdvancesPastOthers checks that a category consumer moves
// over the events of other categories with Advance, a write per read, not a
// unit per event.
func testCategoryAdvancesPastOthers(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	const others = 40
	appendTo(t, s, "order-1", 1)
	for i := range others {
		appendTo(t, s, "customer-1", i)
	}
	appendTo(t, s, "order-2", 2)
	for i := range others {
		appendTo(t, s, "customer-2", i)
	}
	all := awaitAll(t, s, 2*others+2)
	spy := newSpySource(src)
	cm := newCommits()
	name := uniqueName("advance")
	cfg := config(name, cm)
	cfg.BatchSize = 10
	ch := subscribe(t, newSubscriber(t, spy, cfg), "order")

	for _, want := range []events.Envelope{all[0], all[others+1]} {
		msg := receive(t, ch)
		require.Equal(t, want.ID, msg.UUID)
		require.True(t, msg.Ack())
	}
	last := all[len(all)-1].Token
	cpName := feed.CheckpointName(name, "order")
	cm.await(t, cpName, last)
	pos, err := src.Checkpoints().Position(t.Context(), cpName)
	require.NoError(t, err)
	require.Equal(t, last, pos, "the checkpoint moved past the unmatched events at the end")
	require.Equal(t, int64(2), spy.cps.begun.Load(), "one unit per delivered event, none for the others")
	require.Positive(t, spy.cps.advances.Load())
	requireNoMessage(t, ch, "only the category's events are delivered")
}

func testPendingBackoff(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	appendTo(t, s, "order-1", 1)
	all := awaitAll(t, s, 1)
	pend := &pendingSource{Source: src}
	pend.pending.Store(3)
	cm := newCommits()
	name := uniqueName("pending")
	cfg := config(name, cm)
	// Only the pending backoff can bring the event: the append happened
	// before the subscriber took its wake channel, and the polls are off.
	cfg.SafetyPollInterval, cfg.FallbackPollInterval = time.Hour, time.Hour
	cfg.PendingBackoffMin, cfg.PendingBackoffMax = time.Millisecond, 4*time.Millisecond
	ch := subscribe(t, newSubscriber(t, pend, cfg), feed.TopicAll)

	msg := receive(t, ch)
	require.Equal(t, all[0].ID, msg.UUID)
	require.GreaterOrEqual(t, pend.reads.Load(), int64(4), "three pending reads, then the one that found the event")
	require.True(t, msg.Ack())
	cm.await(t, name, all[0].Token)
}

func testFallbackPoll(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	cm := newCommits()
	name := uniqueName("fallback")
	cfg := config(name, cm)
	cfg.FallbackPollInterval, cfg.SafetyPollInterval = 10*time.Millisecond, time.Hour
	idle := &atomic.Int64{}
	ch := subscribe(t, newSubscriber(t, silentSource{Source: src, healthy: false, idle: idle}, cfg), feed.TopicAll)
	// Append only once the subscriber has found nothing and waits: a read
	// already under way could otherwise find the event without a poll.
	require.Eventually(t, func() bool { return idle.Load() > 0 }, waitTimeout, time.Millisecond)

	appendTo(t, s, "order-1", 1) // no wake-up reaches the subscriber
	all := awaitAll(t, s, 1)
	msg := receive(t, ch)
	require.Equal(t, all[0].ID, msg.UUID)
	require.True(t, msg.Ack())
	cm.await(t, name, all[0].Token)
}

func testSafetyPoll(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	cm := newCommits()
	name := uniqueName("safety")
	cfg := config(name, cm)
	cfg.FallbackPollInterval, cfg.SafetyPollInterval = time.Hour, 20*time.Millisecond
	idle := &atomic.Int64{}
	ch := subscribe(t, newSubscriber(t, silentSource{Source: src, healthy: true, idle: idle}, cfg), feed.TopicAll)
	// Append only once the subscriber has found nothing and waits: a read
	// already under way could otherwise find the event without a poll.
	require.Eventually(t, func() bool { return idle.Load() > 0 }, waitTimeout, time.Millisecond)

	appendTo(t, s, "order-1", 1) // its wake-up is lost
	all := awaitAll(t, s, 1)
	msg := receive(t, ch)
	require.Equal(t, all[0].ID, msg.UUID)
	require.True(t, msg.Ack())
	cm.await(t, name, all[0].Token)
}

func testNoUnitOpenWhileIdle(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	spy := newSpySource(src)
	cm := newCommits()
	name := uniqueName("idle")
	ch := subscribe(t, newSubscriber(t, spy, config(name, cm)), feed.TopicAll)
	appendTo(t, s, "order-1", 1, 2, 3)
	all := awaitAll(t, s, 3)

	msg := receive(t, ch)
	require.Equal(t, int64(1), spy.cps.open.Load(), "one unit while a message is in the handler's hands")
	require.True(t, msg.Nack())
	for _, want := range all {
		msg := receive(t, ch)
		require.Equal(t, want.ID, msg.UUID)
		require.Equal(t, int64(1), spy.cps.open.Load(), "one unit while a message is in the handler's hands")
		require.True(t, msg.Ack())
		cm.await(t, name, want.Token)
	}
	require.Zero(t, spy.cps.open.Load(), "no unit may stay open while the consumer waits for events")
}

func testContextEndClosesSubscription(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	appendTo(t, s, "order-1", 1)
	all := awaitAll(t, s, 1)
	name := uniqueName("ctx")
	sub := newSubscriber(t, src, config(name, newCommits()))
	ctx, cancel := context.WithCancel(t.Context())
	ch, err := sub.Subscribe(ctx, feed.TopicAll)
	require.NoError(t, err)
	msg := receive(t, ch)
	cancel()
	requireClosed(t, ch)
	select {
	case <-msg.Context().Done():
	default:
		t.Fatal("ending the Subscribe context must cancel the in-flight message's context")
	}
	// Its holder answers, too late to count: the given-up unit waits for
	// the answer to roll back.
	msg.Nack()

	// The ended consumer released its lease: a new one on the same
	// Subscriber resumes at once, with the never-acked event.
	cm := newCommits()
	sub2 := newSubscriber(t, src, config(name, cm))
	ch2 := subscribe(t, sub2, feed.TopicAll)
	msg = receive(t, ch2)
	require.Equal(t, all[0].ID, msg.UUID)
	require.True(t, msg.Ack())
	cm.await(t, name, all[0].Token)
}

func testClose(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	name := uniqueName("close")
	sub, err := feed.NewSubscriber(src, config(name, newCommits()))
	require.NoError(t, err)
	chAll, err := sub.Subscribe(t.Context(), feed.TopicAll)
	require.NoError(t, err)
	chCat, err := sub.Subscribe(t.Context(), "order")
	require.NoError(t, err)
	appendTo(t, s, "order-1", 1)
	held := receive(t, chAll) // the consumer holds its lease now
	// Its handler answers only after Close, as it would if it had called it.
	defer held.Nack()

	require.NoError(t, sub.Close())
	for _, ch := range []<-chan *message.Message{chAll, chCat} {
		select {
		case _, ok := <-ch:
			require.False(t, ok, "Close must close the output channels before it returns")
		default:
			t.Fatal("Close returned before closing an output channel")
		}
	}
	require.NoError(t, sub.Close(), "a second Close is harmless")
	_, err = sub.Subscribe(t.Context(), feed.TopicAll)
	require.ErrorIs(t, err, events.ErrClosed)

	// Close released the lease: another owner takes it without waiting for
	// it to expire.
	l, err := src.Checkpoints().Acquire(t.Context(), name, "another-process", time.Minute)
	require.NoError(t, err, "Close must release the lease")
	require.NoError(t, src.Checkpoints().Release(t.Context(), l))
}

func testRouter(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	appendTo(t, s, "order-1", 1, 2, 3)
	all := awaitAll(t, s, 3)
	cm := newCommits()
	name := uniqueName("router")
	sub := newSubscriber(t, src, config(name, cm))

	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	var (
		mu      sync.Mutex
		handled []string
		failed  bool
	)
	router.AddConsumerHandler("projection", feed.TopicAll, sub, func(msg *message.Message) error {
		mu.Lock()
		defer mu.Unlock()
		if msg.UUID == all[1].ID && !failed {
			failed = true
			return errors.New("transient failure")
		}
		handled = append(handled, msg.UUID)
		return nil
	})
	runDone := make(chan error, 1)
	go func() { runDone <- router.Run(context.WithoutCancel(t.Context())) }()
	defer func() {
		require.NoError(t, router.Close())
		require.NoError(t, <-runDone)
	}()

	cm.await(t, name, all[2].Token)
	mu.Lock()
	defer mu.Unlock()
	require.True(t, failed)
	require.Equal(t, ids(all), handled, "a failed event is retried before anything behind it")
}

// testCommitBatch: with CommitBatch > 1, events already read share a unit;
// a Nack in the middle rolls the unit back and redelivers from its first
// event, the events before the Nacked one in a unit of their own (so the
// failing event then heads its unit), and the checkpoint only ever lands on
// a unit's last event. UnitEvents tells each delivery its unit's events.
func testCommitBatch(t *testing.T, s events.Store, src feed.Source) {
	t.Helper()
	for i := range 7 {
		appendTo(t, s, "order-1", i)
	}
	all := awaitAll(t, s, 7)
	cm := newCommits()
	name := uniqueName("batch")
	cfg := config(name, cm)
	cfg.CommitBatch = 4
	ch := subscribe(t, newSubscriber(t, src, cfg), feed.TopicAll)

	// First unit: events 0..3. Ack 0 and 1, Nack 2.
	for i := range 2 {
		msg := receive(t, ch)
		require.Equal(t, all[i].ID, msg.UUID)
		require.True(t, msg.Ack())
	}
	msg := receive(t, ch)
	require.Equal(t, all[2].ID, msg.UUID)
	require.True(t, msg.Nack())
	require.Zero(t, cm.count(), "acked events of a unit are not committed before the unit ends")

	// Redelivered from the unit's first event; everything acked now. Each
	// message names the events of its unit, itself at its index.
	var got []string
	var units [][]string
	for len(got) < len(all) {
		msg := receive(t, ch)
		got = append(got, msg.UUID)
		unit, i := feed.UnitEvents(msg.Context()), feed.UnitIndex(msg.Context())
		require.Less(t, i, len(unit))
		require.Equal(t, msg.UUID, unit[i].ID, "the unit's events hold the message at its index")
		if i == 0 {
			units = append(units, ids(unit))
		}
		require.True(t, msg.Ack())
	}
	require.Equal(t, [][]string{ids(all[:2]), ids(all[2:6]), ids(all[6:])}, units, "UnitEvents lists each unit's events")
	require.Equal(t, ids(all), got, "after the rollback the unit is delivered again from its start, in order")
	cm.await(t, name, all[6].Token)
	pos, err := src.Checkpoints().Position(t.Context(), name)
	require.NoError(t, err)
	require.Equal(t, all[6].Token, pos)
	require.Equal(t, 3, cm.count(), "7 events after a Nack at the third: units of 2, 4 and 1")
}
