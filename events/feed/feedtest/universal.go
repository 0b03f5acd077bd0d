package feedtest

import (
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/tests"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// UniversalFeatures are the Watermill universal-suite features that
// feed.Subscriber and feed.Publisher have over any Source:
//
//   - GuaranteedOrder: one consumer per name delivers one event at a time in
//     global order, so the suite's ten competing subscribers still see
//     publish order.
//   - ConsumerGroups: a consumer name is a group: every name receives every
//     event once, from its own checkpoint. Members of a group do not share
//     the load: one delivers, the others stand by.
//   - Persistent: events live in the store, not in the Subscriber; the suite
//     gets one store per test shared by all the pub/subs it builds, which is
//     what Persistent asks for (memstore is persistent for its lifetime).
//   - ExactlyOnceDelivery is false: delivery is at least once (an Ack that
//     never reaches the checkpoint is delivered again).
//   - NewSubscriberReceivesOldMessages: a consumer with a new name starts at
//     the beginning of the feed. RunUniversal checks this with fresh names,
//     since the suite's pub/subs share one name.
//
// Copy it and set ForceShort for slow sources.
var UniversalFeatures = tests.Features{
	ConsumerGroups:                   true,
	ExactlyOnceDelivery:              false,
	GuaranteedOrder:                  true,
	Persistent:                       true,
	NewSubscriberReceivesOldMessages: true,
}

// RunUniversal runs Watermill's universal Pub/Sub suite (tests.TestPubSub)
// against feed.Publisher and feed.Subscriber over the stores newStore
// returns. Every test of the suite gets one store, shared by all the
// Publishers and Subscribers it builds; the Subscribers share the consumer
// name "universal" (the consumer-group tests use their group as the name).
// The Publishers use EncodingBase64, since the suite publishes payloads that
// are not JSON ("x").
//
// When features.NewSubscriberReceivesOldMessages is set, that test runs
// separately with a fresh consumer name per Subscriber: with one shared name,
// the suite's later Subscribers would stand by rather than read.
func RunUniversal(t *testing.T, newStore NewSourceFunc, features tests.Features) {
	t.Helper()
	u := &universal{newStore: newStore, stores: map[*testing.T]*storeAndSource{}}
	main := features
	main.NewSubscriberReceivesOldMessages = false
	tests.TestPubSub(t, main, u.pubSub(func() string { return "universal" }), u.consumerGroupPubSub)

	if features.NewSubscriberReceivesOldMessages {
		t.Run("TestNewSubscriberReceivesOldMessagesWithFreshNames", func(t *testing.T) {
			t.Parallel()
			tests.TestNewSubscriberReceivesOldMessages(t, tests.TestContext{TestID: tests.NewTestID(), Features: features},
				u.pubSub(func() string { return uniqueName("universal") }))
		})
	}
}

type storeAndSource struct {
	once  sync.Once
	store events.Store
	src   feed.Source
}

// universal hands out one store per test of the suite: the suite calls its
// constructors many times per test (some from several goroutines), with the
// test's *testing.T, and expects them all to see the same messages.
type universal struct {
	newStore NewSourceFunc
	mu       sync.Mutex
	stores   map[*testing.T]*storeAndSource
}

func (u *universal) storeFor(t *testing.T) *storeAndSource {
	t.Helper()
	u.mu.Lock()
	s, ok := u.stores[t]
	if !ok {
		s = &storeAndSource{}
		u.stores[t] = s
		t.Cleanup(func() {
			u.mu.Lock()
			delete(u.stores, t)
			u.mu.Unlock()
		})
	}
	u.mu.Unlock()
	// Built outside the map's lock: on PostgreSQL this creates a schema,
	// and the suite's tests run in parallel.
	s.once.Do(func() { s.store, s.src = u.newStore(t) })
	require.NotNil(t, s.src, "the store constructor failed in another goroutine of this test")
	return s
}

// newPubSub builds a Publisher and a Subscriber named name over t's store;
// the Subscriber is closed when the test ends even if the suite does not.
func (u *universal) newPubSub(t *testing.T, name string) (message.Publisher, message.Subscriber) {
	t.Helper()
	s := u.storeFor(t)
	pub, err := feed.NewPublisher(s.store, &feed.PublisherConfig{Encoding: feed.EncodingBase64})
	require.NoError(t, err)
	sub, err := feed.NewSubscriber(s.src, &feed.SubscriberConfig{
		ConsumerName:   name,
		LeaseTTL:       5 * time.Second,
		RenewInterval:  200 * time.Millisecond,
		NackBackoffMin: time.Millisecond,
		NackBackoffMax: 10 * time.Millisecond,
		Logger:         quietLogger,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = sub.Close() })
	return pub, sub
}

func (u *universal) pubSub(name func() string) tests.PubSubConstructor {
	return func(t *testing.T) (message.Publisher, message.Subscriber) {
		t.Helper()
		return u.newPubSub(t, name())
	}
}

func (u *universal) consumerGroupPubSub(t *testing.T, group string) (message.Publisher, message.Subscriber) {
	t.Helper()
	return u.newPubSub(t, group)
}
