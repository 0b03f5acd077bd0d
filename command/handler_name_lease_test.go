package command_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/rowjson"
)

// leaseRefused reports whether the feed refuses a lease under one of a
// consumer's checkpoint names: the handlers AddHandlers must refuse.
func leaseRefused(checkpoints []string) bool {
	for _, cp := range checkpoints {
		if feed.ValidateLease(cp, "owner", time.Minute) != nil {
			return true
		}
	}
	return false
}

// checkpointsOf is what a handler's consumer checkpoints the commands of
// typ under, split into partitions like a Processor.
func checkpointsOf(consumer, typ string, partitions int) []string {
	if partitions <= 1 {
		return []string{feed.CheckpointName(consumer, command.Category(typ))}
	}
	var cps []string
	for i := range partitions {
		cps = append(cps, feed.CheckpointName(feed.PartitionName(consumer, i, partitions), command.Category(typ)))
	}
	return cps
}

// randomName mixes what a consumer name may hold with what it may not:
// C0 controls and DEL (which the feed refuses), C1 controls such as
// U+0085 and the line and paragraph separators (which it takes), invalid
// UTF-8, and runs long enough to cross feed.MaxLeaseTextBytes.
func randomName(rng *rand.Rand) string {
	valid := []string{"a", "z", "0", "-", "_", ".", " ", "/", "#", "é", "€", "😀", "\u0085", "\u009f", "\u2028", "\u2029", "\u00a0"}
	invalid := []string{"\x00", "\n", "\t", "\x1f", "\x7f", "\xff", "\xc3", "\xe2\x82", "\xed\xa0\x80"}
	var b strings.Builder
	n := 1 + rng.IntN(12)
	switch rng.IntN(6) {
	case 0: // about the limit
		n = feed.MaxLeaseTextBytes - len(command.DefaultConsumerPrefix) - 60 + rng.IntN(80)
	case 1: // far over it
		n = feed.MaxLeaseTextBytes + rng.IntN(4<<10)
	}
	bad := rng.IntN(3) == 0
	for b.Len() < n {
		if bad && rng.IntN(8) == 0 {
			b.WriteString(invalid[rng.IntN(len(invalid))])
			continue
		}
		b.WriteString(valid[rng.IntN(len(valid))])
	}
	return b.String()
}

// TestAddHandlersRefusesANameNoLeaseIsTakenUnder: a handler's name is
// part of its feed consumer's name, and a consumer whose lease the store
// refuses retries it for ever: the handler never runs, with nothing but a
// log line to say why. So AddHandlers refuses, up front, exactly the
// handler names under which the feed would refuse a lease (a C0 control
// character, DEL, invalid UTF-8) or that make a checkpoint name longer
// than feed.MaxLeaseTextBytes, naming the handler and saying what a name
// may hold; a refused call adds nothing, not even the valid handler beside
// it. A name it takes (C1 controls and separators are ordinary text to
// the feed) is one the store holds each of the consumer's leases under.
// Names, the partition count and the order in the call are random.
func TestAddHandlersRefusesANameNoLeaseIsTakenUnder(t *testing.T) {
	t.Parallel()
	eachStoreSeeded(t, func(t *testing.T, mk storeMaker, rng *rand.Rand) { //nolint:thelper // a subtest body
		ctx := context.Background()
		reg := registry(t)
		events.Register[refundCmd](reg, "refund")
		s := mk(t, reg)
		var refused, taken int
		for range 150 {
			name := randomName(rng)
			partitions := []int{0, 1, 2, 5}[rng.IntN(4)]
			router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
			require.NoError(t, err)
			p, err := command.NewProcessor(&command.ProcessorConfig{Store: s, Router: router, Partitions: partitions})
			require.NoError(t, err)
			handlers := []cqrs.CommandHandler{
				cqrs.NewCommandHandler("refunds", func(context.Context, *refundCmd) error { return nil }),
				cqrs.NewCommandHandler(name, func(context.Context, *Deposit) error { return nil }),
			}
			rng.Shuffle(len(handlers), func(i, j int) { handlers[i], handlers[j] = handlers[j], handlers[i] })
			consumer := command.DefaultConsumerPrefix + "." + name
			cps := checkpointsOf(consumer, "account.deposit", partitions)

			err = p.AddHandlers(handlers...)
			if strings.ContainsAny(name, "/#") {
				// '/' and '#' separate topics and partitions in checkpoint
				// names: refused whatever the rest of the name.
				refused++
				require.ErrorContains(t, err, "'/' or '#'", "handler name %q", name)
				require.Empty(t, p.Consumers(), "a refused call adds nothing")
				require.Empty(t, router.Handlers(), "and nothing reaches the router")
				continue
			}
			if leaseRefused(cps) {
				refused++
				require.Error(t, err, "handler name %q", name)
				require.ErrorContains(t, err, "without control characters", "the error says what a name may hold")
				require.ErrorContains(t, err, fmt.Sprintf("handler %q", rowjson.Clip(name, 64)), "it names the handler")
				require.Empty(t, p.Consumers(), "a refused call adds nothing")
				require.False(t, p.Handles("refund"), "not even the valid handler beside it")
				require.False(t, p.Handles("account.deposit"))
				require.Empty(t, router.Handlers(), "and nothing reaches the router")
				continue
			}
			taken++
			require.NoError(t, err, "handler name %q", name)
			require.True(t, p.Handles("account.deposit"))
			var got []string
			for _, c := range p.Consumers() {
				if c.Handler == name {
					require.Equal(t, consumer, c.Name)
					got = c.Checkpoints
				}
			}
			require.Equal(t, cps, got)
			for _, cp := range cps {
				l, err := s.Checkpoints().Acquire(ctx, cp, "owner", time.Minute)
				require.NoError(t, err, "the store takes the lease of an accepted handler %q", name)
				require.NoError(t, s.Checkpoints().Release(ctx, l))
			}
		}
		t.Logf("%d names refused, %d taken", refused, taken)
		require.Positive(t, refused)
		require.Positive(t, taken)
	})
}

// TestAHandlerNameFromAConfigFileIsRefused: a handler name read with its
// trailing newline is refused by AddHandlers, with the handler named and
// what a name may hold; so is a ConsumerPrefix no consumer name can start
// with, by NewProcessor. A name with a C1 control character is one the
// feed takes, and its handler handles its commands.
func TestAHandlerNameFromAConfigFileIsRefused(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		ctx := context.Background()
		s := mk(t, registry(t))
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		for _, prefix := range []string{"command\n", "cmd\x00", "\xffcmd", strings.Repeat("c", feed.MaxLeaseTextBytes)} {
			_, err := command.NewProcessor(&command.ProcessorConfig{Store: s, Router: router, ConsumerPrefix: prefix})
			require.ErrorContains(t, err, "ConsumerPrefix", "prefix %q", prefix)
		}
		p, err := command.NewProcessor(&command.ProcessorConfig{Store: s, Router: router})
		require.NoError(t, err)
		deposit := func(_ context.Context, _ int, c Deposit) ([]any, error) {
			return []any{Deposited{Amount: c.Amount}}, nil
		}
		byAccount := func(c Deposit) string { return "account-" + c.Account }

		err = p.AddHandlers(command.Handle("deposit\n", s, balance, byAccount, deposit))
		require.ErrorContains(t, err, `handler "deposit\n"`)
		require.ErrorContains(t, err, "U+000A")
		require.ErrorContains(t, err, "without control characters")
		require.Empty(t, router.Handlers())

		require.NoError(t, p.AddHandlers(command.Handle("deposit\u0085", s, balance, byAccount, deposit)))
		sent(t, s, "process-1", Deposit{Account: "a", Amount: 1})
		runRouter(t, router)
		awaitFeed(t, s, "the command handled", func() bool {
			v, err := s.StreamVersion(ctx, "account-a")
			require.NoError(t, err)
			return v > 0
		})
	})
}

// TestAddHandlersIsAllOrNothing: a call with a handler AddHandlers must
// refuse after valid ones (a name another component took on the router,
// a command that is no pointer) adds none of them, so fixing the one and
// calling again does not trip over the others.
func TestAddHandlersIsAllOrNothing(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	events.Register[refundCmd](reg, "refund")
	s := stores["memory"](t, reg)
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddConsumerHandler("taken", "some-topic", gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}), func(*message.Message) error { return nil })
	p, err := command.NewProcessor(&command.ProcessorConfig{Store: s, Router: router})
	require.NoError(t, err)
	refunds := cqrs.NewCommandHandler("refunds", func(context.Context, *refundCmd) error { return nil })
	for _, c := range []struct {
		what string
		last cqrs.CommandHandler
	}{
		{"a name taken on the router", cqrs.NewCommandHandler("taken", func(context.Context, *Deposit) error { return nil })},
		{"a command that is no pointer", noPointer{}},
	} {
		what, last := c.what, c.last
		require.NotPanics(t, func() { err = p.AddHandlers(refunds, last) }, what)
		require.Error(t, err, what)
		require.False(t, p.Handles("refund"), "%s: the handler before it is not added", what)
		require.Empty(t, p.Consumers(), what)
		require.NotContains(t, router.Handlers(), "refunds", what)
	}
	require.NoError(t, p.AddHandlers(refunds, cqrs.NewCommandHandler("deposits", func(context.Context, *Deposit) error { return nil })))
	require.Len(t, p.Consumers(), 2)
}

// noPointer is a handler whose NewCommand returns a value, which cqrs
// cannot unmarshal into.
type noPointer struct{}

func (noPointer) HandlerName() string               { return "no-pointer" }
func (noPointer) NewCommand() any                   { return Deposit{} }
func (noPointer) Handle(context.Context, any) error { return nil }
