package command_test

import (
	"context"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// TestPlanAddsNothingAndNamesTheConsumers: Plan accepts and refuses what
// AddHandlers does, adds nothing to the router or the Processor, and
// returns the consumers AddHandlers then records, for a random partition
// count.
func TestPlanAddsNothingAndNamesTheConsumers(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	reg := registry(t)
	events.Register[Pay](reg, "pay")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	require.NoError(t, err)
	defer store.Close()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router, Partitions: 1 + r.IntN(4)})
	require.NoError(t, err)
	handlers := []cqrs.CommandHandler{
		cqrs.NewCommandHandler("deposits", func(context.Context, *Deposit) error { return nil }),
		cqrs.NewCommandHandler("payments", func(context.Context, *Pay) error { return nil }),
	}

	_, err = p.Plan(handlers[0], cqrs.NewCommandHandler("deposits", func(context.Context, *Pay) error { return nil }))
	require.ErrorContains(t, err, `"deposits" is taken`)
	planned, err := p.Plan(handlers...)
	require.NoError(t, err)
	require.Empty(t, router.Handlers(), "Plan mounted a handler")
	require.Empty(t, p.Consumers())
	require.False(t, p.Handles("pay"))

	require.NoError(t, p.AddHandlers(handlers...))
	require.Equal(t, planned, p.Consumers())
	require.Equal(t, []string{"deposits", "payments"}, slices.Sorted(maps.Keys(router.Handlers())))
	_, err = p.Plan(cqrs.NewCommandHandler("payments-2", func(context.Context, *Pay) error { return nil }))
	require.ErrorContains(t, err, "both handle command type")
}

// TestNewProcessorRefusesASubscriberNoHandlerCouldHave: a Subscriber
// configuration no feed subscriber takes is refused by NewProcessor, not
// by AddHandlers, which could only find it once handlers were on the
// router.
func TestNewProcessorRefusesASubscriberNoHandlerCouldHave(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: registry(t)})
	require.NoError(t, err)
	defer store.Close()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	for _, partitions := range []int{1, 3} {
		_, err = command.NewProcessor(&command.ProcessorConfig{
			Store: store, Router: router, Partitions: partitions,
			Subscriber: feed.SubscriberConfig{LeaseTTL: time.Minute, RenewInterval: 2 * time.Minute},
		})
		require.ErrorContains(t, err, "RenewInterval", "partitions %d", partitions)
		require.Empty(t, router.Handlers())
	}
}
