package feed_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestAddHandlersOntoATakenNameAddsNothing: a processor mounted on a
// router that already has a handler named like one of its partitions'
// handlers (random partition counts, random partition) is refused with
// an error naming the name, instead of the router's panic, and adds none
// of its handlers; nothing mounted, it mounts on another router. A handler
// named after the processor alone takes no partition's name.
func TestAddHandlersOntoATakenNameAddsNothing(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	noop := func(context.Context, events.Envelope) error { return nil }
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { require.NoError(t, pubsub.Close()) })
	routerWith := func(names ...string) *message.Router {
		r, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		require.NoError(t, err)
		for _, n := range names {
			r.AddConsumerHandler(n, "topic", pubsub, func(*message.Message) error { return nil })
		}
		return r
	}
	handlerNames := func(r *message.Router) []string {
		var out []string
		for n := range r.Handlers() {
			out = append(out, n)
		}
		slices.Sort(out)
		return out
	}

	for range 20 {
		partitions := 1 + rng.IntN(16)
		_, src := newMemstore(t)
		p, err := feed.NewProcessor(src, &feed.ProcessorConfig{Name: "billing", Partitions: partitions}, noop)
		require.NoError(t, err)
		t.Cleanup(func() { require.NoError(t, p.Close()) })
		names := p.CheckpointNames()
		require.Len(t, names, partitions)

		taken := names[rng.IntN(partitions)]
		r := routerWith("other", taken)
		var err2 error
		require.NotPanics(t, func() { err2 = p.AddHandlers(r) }, "partitions %d, %q taken", partitions, taken)
		require.ErrorContains(t, err2, `"`+taken+`"`, "partitions %d", partitions)
		require.ErrorContains(t, err2, "rename")
		require.Equal(t, handlerNames(routerWith("other", taken)), handlerNames(r), "the refused call added handlers")

		// Only a partition's own name clashes: a handler named after the
		// processor alone leaves room for its partitions.
		var free *message.Router
		if partitions > 1 {
			free = routerWith("billing")
		} else {
			free = routerWith("billing#0/2")
		}
		before := handlerNames(free)
		require.NoError(t, p.AddHandlers(free), "partitions %d: after a refusal, on a router without its names", partitions)
		require.ElementsMatch(t, append(before, names...), handlerNames(free))
	}
}
