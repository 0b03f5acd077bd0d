package feed_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// runProcessor runs p until the test ends.
func runProcessor(t *testing.T, p *feed.Processor) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.ErrorIs(t, <-done, context.Canceled)
		require.NoError(t, p.Close())
	})
}

func fastRetries() feed.SubscriberConfig {
	return feed.SubscriberConfig{NackBackoffMin: time.Millisecond, NackBackoffMax: 2 * time.Millisecond}
}

// TestGiveUpRecordsWhatARowCanHold: giving up on an event always leaves a
// record, whatever the handler's error or the event holds: an error with
// NUL (which PostgreSQL's jsonb refuses) is kept with U+FFFD; an event
// full of characters JSON escapes for HTML is dead-lettered whole; one too
// large for a dead letter's row halts the partition, saying why, instead
// of being retried for ever with nothing recorded.
func TestGiveUpRecordsWhatARowCanHold(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	type giveUp struct {
		letter *feed.DeadLetterRecord
		halt   *feed.HaltRecord
	}
	run := func(t *testing.T, policy feed.OnFailure, payload string, fail error) giveUp {
		t.Helper()
		store, src := newMemstore(t)
		res, err := store.Append(ctx, "s-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "t", Payload: []byte(payload)}})
		require.NoError(t, err)
		bad := res.EventIDs[0]
		got := make(chan giveUp, 2)
		p, err := feed.NewProcessor(src, &feed.ProcessorConfig{
			Name: "give_up", MaxAttempts: 2, OnFailure: policy, Subscriber: fastRetries(),
			OnDeadLetter: func(r feed.DeadLetterRecord) { got <- giveUp{letter: &r} },
			OnHalt:       func(r feed.HaltRecord) { got <- giveUp{halt: &r} },
		}, func(_ context.Context, env events.Envelope) error {
			if env.ID == bad {
				return fail
			}
			return nil
		})
		require.NoError(t, err)
		runProcessor(t, p)
		select {
		case g := <-got:
			return g
		case <-time.After(20 * time.Second):
			t.Fatalf("the processor never gave up on the event: %+v", p.Status().Partitions[0])
			return giveUp{}
		}
	}

	t.Run("NUL in the error", func(t *testing.T) {
		t.Parallel()
		for _, policy := range []feed.OnFailure{feed.DeadLetter, feed.Halt} {
			g := run(t, policy, `{}`, errors.New("bad input: x\x00y"))
			reason := ""
			if g.letter != nil {
				reason = g.letter.Reason
			} else {
				reason = g.halt.Reason
			}
			require.Equal(t, "bad input: x\uFFFDy", reason, "policy %v", policy)
		}
	})
	t.Run("a long error", func(t *testing.T) {
		t.Parallel()
		// Past the 4 KiB the package doc promises, by random lengths and
		// runes: the cut record, its note included, stays within it.
		seed := rand.Uint64()
		t.Logf("seed %d", seed)
		rng := rand.New(rand.NewPCG(seed, 7))
		pieces := []string{"a", "é", "€", "😀", "\x00"}
		for _, policy := range []feed.OnFailure{feed.DeadLetter, feed.Halt} {
			n := 4<<10 + 1 + rng.IntN(1<<rng.IntN(21))
			var b strings.Builder
			for b.Len() < n {
				b.WriteString(pieces[rng.IntN(len(pieces))])
			}
			g := run(t, policy, `{}`, errors.New(b.String()))
			reason := ""
			if g.letter != nil {
				reason = g.letter.Reason
			} else {
				reason = g.halt.Reason
			}
			require.NotContains(t, reason, "\x00")
			require.LessOrEqual(t, len(reason), 4<<10, "seed %d, policy %v: an error of %d bytes", seed, policy, b.Len())
			require.Contains(t, reason, " bytes in all)", "the cut says so")
		}
	})
	t.Run("characters JSON escapes", func(t *testing.T) {
		t.Parallel()
		g := run(t, feed.DeadLetter, `{"s":"`+strings.Repeat("<", 200_000)+`"}`, errors.New("cannot handle"))
		require.NotNil(t, g.letter, "dead-lettered whole")
		require.Len(t, g.letter.Event.Payload, 200_008)
	})
	t.Run("an event too large for a dead letter", func(t *testing.T) {
		t.Parallel()
		g := run(t, feed.DeadLetter, `{"s":"`+strings.Repeat("x", events.DefaultMaxPayloadBytes-100)+`"}`, errors.New("cannot handle"))
		require.NotNil(t, g.halt, "halted instead")
		require.Contains(t, g.halt.Reason, "not dead-lettered")
		long := run(t, feed.DeadLetter, `{"s":"`+strings.Repeat("x", events.DefaultMaxPayloadBytes-100)+`"}`, errors.New(strings.Repeat("é", 1<<12)))
		require.NotNil(t, long.halt, "halted instead")
		require.Contains(t, long.halt.Reason, "not dead-lettered", "the note survives the cut")
		require.LessOrEqual(t, len(long.halt.Reason), 4<<10)
	})
}

// renewFails makes a checkpoint store's lease renewals and heartbeats
// fail while fail is set, as an unreachable database would for one
// process.
type renewFails struct {
	feed.CheckpointStore
	fail *atomic.Bool
}

func (f renewFails) Renew(ctx context.Context, l feed.Lease, ttl time.Duration) error {
	if f.fail.Load() {
		return errors.New("injected: cannot renew")
	}
	return f.CheckpointStore.Renew(ctx, l, ttl)
}

func (f renewFails) Heartbeat(ctx context.Context, group, member string, ttl time.Duration) ([]string, error) {
	if f.fail.Load() {
		return nil, errors.New("injected: cannot heartbeat")
	}
	return f.CheckpointStore.Heartbeat(ctx, group, member, ttl)
}

type renewFailsSource struct {
	feed.Source
	cps renewFails
}

func (s renewFailsSource) Checkpoints() feed.CheckpointStore { return s.cps }

// TestHaltByAnotherProcessIsSeenAfterTheLeaseComesBack: a process frozen
// in a handler loses its lease; another takes over and halts the
// partition on an event. When the first comes back and takes the lease at
// once, it honours that halt: it does not apply the event.
func TestHaltByAnotherProcessIsSeenAfterTheLeaseComesBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, mem := newMemstore(t)
	appendOne := func(stream string) events.AppendResult {
		r, err := store.Append(ctx, stream, events.AnyVersion, events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
		require.NoError(t, err)
		return r
	}
	sub := func(owner string) feed.SubscriberConfig {
		s := fastRetries()
		s.Owner, s.LeaseTTL, s.RenewInterval = owner, 300*time.Millisecond, 50*time.Millisecond
		return s
	}
	var fail atomic.Bool
	first := appendOne("s-0")
	release, frozen := make(chan struct{}), make(chan struct{})
	var freeze sync.Once
	var mu sync.Mutex
	applied := map[string]int{}
	p1, err := feed.NewProcessor(renewFailsSource{Source: mem, cps: renewFails{CheckpointStore: mem.Checkpoints(), fail: &fail}},
		&feed.ProcessorConfig{Name: "h", MaxAttempts: 1, Subscriber: sub("p1")},
		func(_ context.Context, env events.Envelope) error {
			if env.StreamID == "s-1" {
				freeze.Do(func() { close(frozen); <-release }) // a pause that ignores its context
			}
			mu.Lock()
			applied[env.ID]++
			mu.Unlock()
			return nil
		})
	require.NoError(t, err)
	runProcessor(t, p1)
	require.Eventually(t, func() bool { pos, _ := p1.Position(ctx); return !pos.Before(first.Token) }, 10*time.Second, time.Millisecond)

	fail.Store(true)
	appendOne("s-1")
	<-frozen
	x := appendOne("s-x").EventIDs[0]
	halted := make(chan feed.HaltRecord, 1)
	p2, err := feed.NewProcessor(mem, &feed.ProcessorConfig{Name: "h", MaxAttempts: 1, Subscriber: sub("p2"), OnHalt: func(r feed.HaltRecord) { halted <- r }},
		func(_ context.Context, env events.Envelope) error {
			if env.ID == x {
				return errors.New("x fails")
			}
			return nil
		})
	require.NoError(t, err)
	ctx2, stop2 := context.WithCancel(ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- p2.Run(ctx2) }()
	select {
	case h := <-halted:
		require.Equal(t, x, h.EventID)
	case <-time.After(20 * time.Second):
		t.Fatal("the second process did not halt")
	}
	stop2()
	require.ErrorIs(t, <-done2, context.Canceled)
	require.NoError(t, p2.Close())

	fail.Store(false)
	close(release)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		require.NotNil(c, p1.Status().Partitions[0].Halt, "the first process sees the halt")
	}, 20*time.Second, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Zero(t, applied[x], "nothing applies the event the partition is halted on")
}
