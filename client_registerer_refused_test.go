package converge_test

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

// refusal is a way to make NewClient fail with a saga engine in the
// configuration: at the lag monitor, once the engine has registered its
// metrics on Config.Registerer, or (a handler name clash) at the check
// of the names, before anything registers.
type refusal struct {
	name string
	// says is in the error NewClient returns.
	says string
	// refuse changes cfg, whose saga processor is "billing" in partitions
	// partitions, so that NewClient refuses it; clash is the name of one of
	// the processor's router handlers.
	refuse func(t *testing.T, st converge.Store, reg *prometheus.Registry, cfg *converge.Config, clash string)
}

// refusals are the steps of NewClient that fail on a configuration the
// saga engine accepts.
var refusals = []refusal{
	{name: "a command handler named like the saga processor", says: "rename", refuse: func(_ *testing.T, st converge.Store, _ *prometheus.Registry, cfg *converge.Config, clash string) {
		cfg.Commands = append(cfg.Commands, refundHandler(st, clash))
	}},
	{name: "a handler of Config.Router named like the saga processor", says: "rename", refuse: func(t *testing.T, _ converge.Store, _ *prometheus.Registry, cfg *converge.Config, clash string) {
		t.Helper()
		pubsub := gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{})
		t.Cleanup(func() { _ = pubsub.Close() })
		router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		require.NoError(t, err)
		router.AddConsumerHandler(clash, "work", pubsub, func(*message.Message) error { return nil })
		cfg.Router = router
	}},
	{name: "a lag monitor on a Registerer another client uses", says: "another Monitor registered them already", refuse: func(t *testing.T, st converge.Store, reg *prometheus.Registry, _ *converge.Config, _ string) {
		t.Helper()
		other := shop(st, nil)
		other.Sagas, other.Commands = nil, nil
		other.Registerer = reg
		_, err := converge.NewClient(st, other)
		require.NoError(t, err)
	}},
}

// refundHandler is a command handler of refundCard named name.
func refundHandler(st converge.Store, name string) cqrs.CommandHandler {
	return command.Handle(name, st, events.Aggregate[int]{},
		func(c refundCard) string { return "card-" + c.OrderID },
		func(context.Context, int, refundCard) ([]any, error) { return nil, nil })
}

// gathered returns the names of the metrics reg exports.
func gathered(t *testing.T, reg prometheus.Gatherer) []string {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	names := make([]string, 0, len(mfs))
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	return names
}

// billing is the shop on st with its saga processor named "billing" in
// a random number of partitions, and its metrics on reg; clash is the
// name of one of the processor's router handlers, picked by r.
func billing(st converge.Store, reg prometheus.Registerer, r *rand.Rand) (cfg *converge.Config, clash string) {
	cfg = shop(st, func(string) *projections.View { return nil })
	cfg.SagaProcessor = "billing"
	cfg.SagaPartitions = 1 + r.IntN(4)
	cfg.Registerer = reg
	cfg.Logger = slog.New(slog.DiscardHandler)
	return cfg, feed.PartitionName(cfg.SagaProcessor, r.IntN(cfg.SagaPartitions), cfg.SagaPartitions)
}

// TestRefusedNewClientLeavesNoMetricsRegistered: a NewClient that fails
// with a saga engine in the configuration (at the saga processor's
// handler names, which a command handler or a handler of the caller's
// router takes, checked before the engine registers anything, or at the
// lag monitor, refused a registerer another client uses, after it has)
// leaves no metric of its own: the registerer exports what it did before
// the call, and no saga metric. The saga
// processor's partition count, and which partition's name clashes, are
// random.
func TestRefusedNewClientLeavesNoMetricsRegistered(t *testing.T) {
	t.Parallel()
	for _, rf := range refusals {
		t.Run(rf.name, func(t *testing.T) {
			t.Parallel()
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			r := rand.New(rand.NewPCG(seed, seed))
			st, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			events.Register[refundCard](st.Registry(), "shop.refund_card")
			reg := prometheus.NewRegistry()
			cfg, clash := billing(st, reg, r)
			rf.refuse(t, st, reg, cfg, clash)
			before := gathered(t, reg)
			cl, err := converge.NewClient(st, cfg)
			require.ErrorContains(t, err, rf.says)
			require.Nil(t, cl)
			after := gathered(t, reg)
			for _, name := range after {
				require.False(t, strings.HasPrefix(name, "converge_saga_"), "the refused client left %s registered", name)
			}
			require.Equal(t, before, after, "the refused client changed what the registerer exports")
		})
	}
}

// TestNewClientRetriedOnTheSameRegistererAfterRefusals: once NewClient
// has refused a configuration for a handler name its saga processor
// clashes with (as the error says, to be renamed), a fixed configuration
// builds on the same Registerer, whose metrics it then exports, however
// many refusals (one to three, of random kinds and partition counts)
// came before.
func TestNewClientRetriedOnTheSameRegistererAfterRefusals(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	st, err := memstore.New(&memstore.Config{Registry: shopRegistry()})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	events.Register[refundCard](st.Registry(), "shop.refund_card")
	reg := prometheus.NewRegistry()
	clashes := refusals[:2] // the lag monitor's refusal stays: another client holds the registerer
	for range 1 + r.IntN(3) {
		rf := clashes[r.IntN(len(clashes))]
		cfg, clash := billing(st, reg, r)
		rf.refuse(t, st, reg, cfg, clash)
		_, err := converge.NewClient(st, cfg)
		require.ErrorContains(t, err, rf.says, rf.name)
		require.Empty(t, gathered(t, reg), "after a refusal for %s", rf.name)
	}
	cfg, _ := billing(st, reg, r)
	cfg.Commands = append(cfg.Commands, refundHandler(st, "refunds")) // the command handler renamed
	cl, err := converge.NewClient(st, cfg)
	require.NoError(t, err, "the fixed configuration on the same Registerer")
	require.NotNil(t, cl)
	names := gathered(t, reg)
	require.True(t, slices.Contains(names, "converge_saga_timers_due"), "exports %v", names)
	require.True(t, slices.Contains(names, lag.MetricHorizonAge), "exports %v", names)
}
