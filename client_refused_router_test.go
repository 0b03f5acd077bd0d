package converge_test

import (
	"context"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// routerRefusal is a configuration NewClient refuses at a step that
// came, before NewClient checked everything first, after the command
// handlers were on Config.Router.
type routerRefusal struct {
	name string
	// says is in the error NewClient returns.
	says string
	// refuse changes cfg, whose saga processor is "billing" in
	// cfg.SagaPartitions partitions on a router holding the caller's
	// handler "audit", so that NewClient refuses it; clash is the name of
	// one of the processor's router handlers. It returns what undoes the
	// cause outside cfg, or nil.
	refuse func(t *testing.T, st converge.Store, reg *prometheus.Registry, cfg *converge.Config, clash string) (fix func())
}

var routerRefusals = []routerRefusal{
	{name: "a command handler named like the saga processor", says: "rename one", refuse: func(_ *testing.T, st converge.Store, _ *prometheus.Registry, cfg *converge.Config, _ string) func() {
		// A partition's name, with partitions > 1, holds '#', which no
		// command handler's name may.
		cfg.SagaPartitions = 1
		cfg.Commands = append(cfg.Commands, refundHandler(st, cfg.SagaProcessor))
		return nil
	}},
	{name: "a handler on Config.Router named like a saga partition", says: "already on Config.Router", refuse: func(t *testing.T, _ converge.Store, _ *prometheus.Registry, cfg *converge.Config, clash string) func() {
		t.Helper()
		addCallersHandler(t, cfg.Router, clash)
		return nil
	}},
	{name: "Config.SagaProcessor named like a command handler", says: "Config.SagaProcessor", refuse: func(_ *testing.T, _ converge.Store, _ *prometheus.Registry, cfg *converge.Config, _ string) func() {
		cfg.SagaProcessor = "charge-card"
		cfg.SagaPartitions = 1 // partitions > 1 are named "charge-card#<i>/<n>"
		return nil
	}},
	{name: "a command handler named like a handler on Config.Router", says: `"audit" is taken`, refuse: func(_ *testing.T, st converge.Store, _ *prometheus.Registry, cfg *converge.Config, _ string) func() {
		cfg.Commands = append(cfg.Commands, refundHandler(st, "audit"))
		return nil
	}},
	{name: "two command handlers of one name", says: `"charge-card" is taken`, refuse: func(_ *testing.T, st converge.Store, _ *prometheus.Registry, cfg *converge.Config, _ string) func() {
		cfg.Commands = append(cfg.Commands, refundHandler(st, "charge-card"))
		return nil
	}},
	{name: "Config.SagaProcessor named like a projection", says: "Config.SagaProcessor", refuse: func(_ *testing.T, _ converge.Store, _ *prometheus.Registry, cfg *converge.Config, _ string) func() {
		cfg.SagaProcessor = "order_status"
		return nil
	}},
	{name: "Config.SagaProcessor named like a command handler's consumer", says: "Config.SagaProcessor", refuse: func(_ *testing.T, _ converge.Store, _ *prometheus.Registry, cfg *converge.Config, _ string) func() {
		cfg.SagaProcessor = command.DefaultConsumerPrefix + ".charge-card"
		return nil
	}},
	{name: "a projection named like a command handler's consumer", says: "rename one", refuse: func(_ *testing.T, _ converge.Store, _ *prometheus.Registry, cfg *converge.Config, _ string) func() {
		p := projections.New(command.DefaultConsumerPrefix+".charge-card", nil)
		projections.On(p, func(context.Context, *projections.Tx, events.Envelope, OrderPlaced) error { return nil })
		cfg.Projections = append(cfg.Projections, p)
		return nil
	}},
	{name: "two saga definitions of one name", says: "two definitions named", refuse: func(_ *testing.T, _ converge.Store, _ *prometheus.Registry, cfg *converge.Config, _ string) func() {
		cfg.Sagas = append(cfg.Sagas, cfg.Sagas[0])
		return nil
	}},
	{name: "a lag monitor on a Registerer another client holds", says: "another Monitor registered them already", refuse: func(t *testing.T, st converge.Store, reg *prometheus.Registry, _ *converge.Config, _ string) func() {
		t.Helper()
		other := shop(st, nil)
		other.Sagas, other.Commands = nil, nil
		other.Registerer = reg
		cl, err := converge.NewClient(st, other)
		require.NoError(t, err)
		return func() { require.NoError(t, cl.Stop(context.Background())) }
	}},
}

// addCallersHandler puts on router a handler of the caller's own, named
// name, reading a Go channel.
func addCallersHandler(t *testing.T, router *message.Router, name string) {
	t.Helper()
	pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
	t.Cleanup(func() { _ = pubsub.Close() })
	router.AddConsumerHandler(name, "work", pubsub, func(*message.Message) error { return nil })
}

// routerHandlers returns the names of router's handlers, sorted.
func routerHandlers(router *message.Router) []string {
	return slices.Sorted(maps.Keys(router.Handlers()))
}

// TestRefusedNewClientLeavesTheRouterAsItWas: whichever step refuses a
// configuration (a handler name the saga processor, a command handler or
// the caller's router takes twice, a saga processor named like a
// projection or a command handler's consumer, a projection named like a
// command handler's consumer, an invalid saga definition, a lag monitor
// on a Registerer another client holds), NewClient leaves the caller's
// router with the handlers it had and no metric on Config.Registerer.
// The fixed configuration then builds on the same router and Registerer,
// adds its handlers there and runs. The refusals come in a random order,
// on one store, with a random partition count and clashing partition.
func TestRefusedNewClientLeavesTheRouterAsItWas(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st converge.Store) { //nolint:thelper // a subtest body
		seed := rand.Uint64()
		t.Logf("seed %d", seed)
		r := rand.New(rand.NewPCG(seed, seed))
		events.Register[refundCard](st.Registry(), "shop.refund_card")
		for _, i := range r.Perm(len(routerRefusals)) {
			rf := routerRefusals[i]
			t.Run(rf.name, func(t *testing.T) {
				router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
				require.NoError(t, err)
				addCallersHandler(t, router, "audit")
				reg := prometheus.NewRegistry()
				cfg, clash := billing(st, reg, r)
				cfg.Router = router
				fix := rf.refuse(t, st, reg, cfg, clash)
				before, exported := routerHandlers(router), gathered(t, reg)

				cl, err := converge.NewClient(st, cfg)
				require.Error(t, err)
				require.Nil(t, cl)
				require.Equal(t, before, routerHandlers(router), "saga partitions %d: the refused client changed the caller's router (%v)", cfg.SagaPartitions, err)
				require.Equal(t, exported, gathered(t, reg), "the refused client changed what the registerer exports")
				require.ErrorContains(t, err, rf.says)

				if fix != nil {
					fix()
				}
				fixed, _ := billing(st, reg, r)
				fixed.SagaProcessor = "invoicing" // free on the router whatever the refusal put there
				fixed.Router = router
				cl, err = converge.NewClient(st, fixed)
				require.NoError(t, err, "the fixed configuration on the same router and Registerer")
				want := append(slices.Clone(before), "charge-card")
				for p := range fixed.SagaPartitions {
					want = append(want, feed.PartitionName(fixed.SagaProcessor, p, fixed.SagaPartitions))
				}
				slices.Sort(want)
				require.Equal(t, want, routerHandlers(router))
				require.NoError(t, cl.Start(context.Background()))
				require.NoError(t, cl.Stop(context.Background()))
			})
		}
	})
}

// TestSagaProcessorNameClashNamesTheSetting: a Config.SagaProcessor
// named like a projection, or like a command handler's feed consumer,
// is refused with an error that names Config.SagaProcessor and what it
// clashes with, and says to rename one; not with the lag monitor's
// refusal of a name listed twice in a list the caller never wrote.
func TestSagaProcessorNameClashNamesTheSetting(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, st converge.Store) { //nolint:thelper // a subtest body
		for _, tc := range []struct{ name, clashesWith string }{
			{name: "order_status", clashesWith: "projection Config.Projections[0]"},
			{name: command.DefaultConsumerPrefix + ".charge-card", clashesWith: `command handler "charge-card"`},
		} {
			cfg := shop(st, func(string) *projections.View { return nil })
			cfg.Logger = slog.New(slog.DiscardHandler)
			cfg.SagaProcessor = tc.name
			cl, err := converge.NewClient(st, cfg)
			require.Nil(t, cl)
			require.ErrorContains(t, err, `Config.SagaProcessor "`+tc.name+`"`)
			require.ErrorContains(t, err, tc.clashesWith)
			require.ErrorContains(t, err, "rename one")
			require.NotContains(t, err.Error(), "listed twice")
		}
	})
}
