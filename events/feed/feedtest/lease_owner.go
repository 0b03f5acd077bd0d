package feedtest

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// writeThrough appends one event to stream through msg's unit, as a
// handler's write: it takes effect only if the unit commits.
func writeThrough(t *testing.T, msg *message.Message, stream string) {
	t.Helper()
	u, ok := events.UnitFromContext(msg.Context())
	require.True(t, ok, "no unit in the message's context")
	_, err := u.Append(msg.Context(), stream, events.AnyVersion,
		events.Event{Data: events.Raw{Type: eventType, Payload: json.RawMessage(`{"written": true}`)}})
	require.NoError(t, err)
}

// requireWrites checks that stream holds n events: the handlers' writes
// that committed.
func requireWrites(t *testing.T, s events.Store, stream string, n int, msgAndArgs ...any) {
	t.Helper()
	got, err := s.ReadStream(context.WithoutCancel(t.Context()), stream, 0, n+10)
	require.NoError(t, err)
	require.Len(t, got, n, msgAndArgs...)
}

// randomOwner is an Owner as operators set them: a pod or host name,
// perhaps with slashes, dashes and non-ASCII letters.
func randomOwner(r *rand.Rand) string {
	const alphabet = "ab0-_./é"
	letters := []rune(alphabet)
	var b strings.Builder
	for range 1 + r.IntN(12) {
		b.WriteRune(letters[r.IntN(len(letters))])
	}
	return b.String()
}

// testSameOwnerNeverSharesALease: Subscribers configured with the same
// Owner (replicas of a StatefulSet named alike, a process restarted while
// its predecessor is frozen) are still different consumers: while one
// holds the lease and an event, the others stand by instead of delivering
// the event a second time, so the handler's writes commit once.
func testSameOwnerNeverSharesALease(t *testing.T, s events.Store, src feed.Source) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	owner := randomOwner(r)
	standbys := 1 + r.IntN(3)

	name := uniqueName("owner")
	checkpoint := feed.CheckpointName(name, "order")
	first := appendTo(t, s, "order-1", 1)
	configOf := func(cm *commits) *feed.SubscriberConfig {
		cfg := config(name, cm)
		cfg.Owner = owner
		return cfg
	}
	cmHolder := newCommits()
	holder, err := feed.NewSubscriber(src, configOf(cmHolder))
	require.NoError(t, err)
	t.Cleanup(func() { _ = holder.Close() })
	held := receive(t, subscribe(t, holder, "order"))
	require.Equal(t, first.EventIDs[0], held.UUID)

	cm := newCommits()
	owners := map[string]bool{onlyStatus(t, holder).Owner: true}
	var chans []<-chan *message.Message
	var subs []*feed.Subscriber
	for range standbys {
		sub := newSubscriber(t, src, configOf(cm))
		subs = append(subs, sub)
		chans = append(chans, subscribe(t, sub, "order"))
	}
	for i, sub := range subs {
		deadline := time.Now().Add(waitTimeout)
		for onlyStatus(t, sub).Lease != feed.LeaseStandingBy {
			select {
			case msg := <-chans[i]:
				t.Fatalf("seed %d: subscriber %d of Owner %q delivered event %s while another held it", seed, i+2, owner, msg.UUID)
			case <-time.After(5 * time.Millisecond):
			}
			require.True(t, time.Now().Before(deadline), "seed %d: subscriber %d never stood by", seed, i+2)
		}
		st := onlyStatus(t, sub)
		require.True(t, strings.HasPrefix(st.Owner, owner+"/"), "seed %d: the lease owner %q does not start with the configured Owner %q", seed, st.Owner, owner)
		require.False(t, owners[st.Owner], "seed %d: two subscribers of Owner %q share the lease owner %q", seed, owner, st.Owner)
		owners[st.Owner] = true
	}

	// The holder's write commits; then it stops and one standby takes over
	// after it, with the next event.
	out := "audit-" + name
	writeThrough(t, held, out)
	require.True(t, held.Ack())
	cmHolder.await(t, checkpoint, first.Token)
	require.NoError(t, holder.Close())
	second := appendTo(t, s, "order-1", 2)
	var next *message.Message
	select {
	case next = <-mergeMessages(t, chans):
	case <-time.After(waitTimeout):
		t.Fatalf("seed %d: no standby took over", seed)
	}
	require.Equal(t, second.EventIDs[0], next.UUID, "seed %d: the standby delivered the committed event again", seed)
	writeThrough(t, next, out)
	require.True(t, next.Ack())
	cm.await(t, checkpoint, second.Token)
	requireWrites(t, s, out, 2, "seed %d: each event's write must commit once", seed)
}

// mergeMessages forwards the messages of chans to one channel, until the
// test ends.
func mergeMessages(t *testing.T, chans []<-chan *message.Message) <-chan *message.Message {
	t.Helper()
	out := make(chan *message.Message)
	for _, ch := range chans {
		go func() {
			for msg := range ch {
				select {
				case out <- msg:
				case <-t.Context().Done():
					msg.Nack()
					return
				}
			}
		}()
	}
	return out
}

// testProcessorSameOwner: two processes running a processor under the same
// Owner are two members of its group, each delivering its own share of
// the partitions under leases of its own, so every event is applied once.
func testProcessorSameOwner(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("sameowner")
	cfg := procConfig(name, 4)
	cfg.Subscriber.Owner = "pod-0"
	var byA, byB atomic.Int64
	handler := func(count *atomic.Int64) feed.Handler {
		return func(ctx context.Context, env events.Envelope) error {
			count.Add(1)
			return applyOnce(ctx, name, env)
		}
	}
	a := startProcessor(t, m, src, cfg, handler(&byA))
	b := startProcessor(t, m, src, cfg, handler(&byB))
	require.NotEqual(t, a.p.Status().Member, b.p.Status().Member, "two processes of one Owner are one member")
	require.True(t, strings.HasPrefix(a.p.Status().Member, "pod-0/"), "the member %q does not start with the Owner", a.p.Status().Member)
	require.Eventually(t, func() bool {
		return len(a.p.Status().Members) == 2 && len(b.p.Status().Members) == 2 && a.active() == 2 && b.active() == 2
	}, waitTimeout, 5*time.Millisecond, "the two processes never split the partitions")

	envs := appendSpread(t, s, name, 16, 80)
	awaitPosition(t, a.p, envs[len(envs)-1].Token)
	requireAppliedOnce(t, src, name, envs)
	require.Positive(t, byA.Load(), "process A handled nothing")
	require.Positive(t, byB.Load(), "process B handled nothing")
}
