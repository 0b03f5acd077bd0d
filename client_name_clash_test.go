package converge_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

type refundCard struct {
	OrderID string `json:"order_id"`
}

// TestNewClientRefusesACommandHandlerNamedLikeTheSagaProcessor: the saga
// processor's router handlers are named after Config.SagaProcessor (with
// SagaPartitions above 1, a partition's name each). A command handler of
// one of these names makes NewClient return an error naming it and saying
// to rename one, instead of the router's panic at the duplicate. A
// partition's name holds '#', which no command handler's name may (it
// would spell another consumer's checkpoint): refused for that, naming
// the handler.
func TestNewClientRefusesACommandHandlerNamedLikeTheSagaProcessor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		partitions int
		handler    string
	}{
		{partitions: 1, handler: "billing"},
		{partitions: 4, handler: "billing#2/4"},
	} {
		t.Run(fmt.Sprint("partitions-", tc.partitions), func(t *testing.T) {
			t.Parallel()
			forEachStore(t, func(t *testing.T, store converge.Store) { //nolint:thelper // a subtest body
				events.Register[refundCard](store.Registry(), "shop.refund_card")
				cfg := shop(store, func(string) *projections.View { return nil })
				cfg.SagaProcessor = "billing"
				cfg.SagaPartitions = tc.partitions
				cfg.Commands = append(cfg.Commands, command.Handle(tc.handler, store, events.Aggregate[int]{},
					func(c refundCard) string { return "card-" + c.OrderID },
					func(context.Context, int, refundCard) ([]any, error) { return nil, nil }))
				var cl *converge.Client
				var err error
				require.NotPanics(t, func() { cl, err = converge.NewClient(store, cfg) })
				require.ErrorContains(t, err, `"`+tc.handler+`"`)
				require.Nil(t, cl)
				if strings.Contains(tc.handler, "#") {
					require.ErrorContains(t, err, "'/' or '#'")
					return
				}
				require.ErrorContains(t, err, "Config.SagaProcessor")
				require.ErrorContains(t, err, "rename")
			})
		})
	}
}
