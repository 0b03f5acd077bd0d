package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/saga"
)

// renamedBuild is the same store seen by a build with another registry:
// what a new deployment of the service is.
type renamedBuild struct {
	saga.Store
	reg *events.Registry
}

func (r renamedBuild) Registry() *events.Registry { return r.reg }

// registryAfterRename is registry() after the command type ReleaseStock was
// renamed from "stock.release" to "inventory.release" the way
// events.Registry documents: the new name registered, the old one an alias.
func registryAfterRename(t *testing.T) *events.Registry {
	t.Helper()
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, "order.placed")
	events.Register[StockReserved](reg, "stock.reserved")
	events.Register[PaymentCharged](reg, "payment.charged")
	events.Register[PaymentDeclined](reg, "payment.declined")
	events.Register[Ping](reg, "order.ping")
	events.Register[ReserveStock](reg, "stock.reserve")
	events.Register[ChargePayment](reg, "payment.charge")
	events.Register[ShipOrder](reg, "order.ship")
	events.Register[ReleaseStock](reg, "inventory.release")
	require.NoError(t, reg.Alias("stock.release", "inventory.release"))
	events.Register[NotifyCustomer](reg, "customer.notify")
	require.NoError(t, command.Register(reg))
	return reg
}

// TestCompensationSurvivesACommandTypeRename: an instance registered the
// compensation ReleaseStock while it was stored as "stock.release". The
// command type is then renamed (new name registered, old one aliased,
// handler deployed under the new name). When the instance later runs its
// compensations, the compensation reaches the command's handler under the
// new name (the step that ran it was refused for want of a handler of the
// old name): it is the one side effect that undoes what the saga did.
func TestCompensationSurvivesACommandTypeRename(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		store := newStore(t, mk)
		old := newBareOn(t, store, orderSaga(false))
		old.deliver(t, old.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 30}))
		old.deliver(t, old.append(t, "order-1", StockReserved{OrderID: "1"}))

		// The new build: the command type renamed, its handler deployed
		// under the new name (command.Processor is the engine's catalog).
		reg2 := registryAfterRename(t)
		ms, err := memstore.New(&memstore.Config{Registry: reg2})
		require.NoError(t, err)
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		cp, err := command.NewProcessor(&command.ProcessorConfig{Store: ms, Router: router})
		require.NoError(t, err)
		require.NoError(t, cp.AddHandlers(commandHandlers(ms)...))
		require.True(t, cp.Handles("inventory.release"))

		eng2, err := saga.NewEngine(&saga.EngineConfig{Store: renamedBuild{Store: store, reg: reg2}, Sagas: []saga.Definition{orderSaga(false)}, Commands: cp})
		require.NoError(t, err)
		nb := bare{store: store, engine: eng2}
		nb.deliver(t, old.append(t, "order-1", PaymentDeclined{OrderID: "1", Reason: "card expired"}))

		tl, err := eng2.Show(ctx, orders, "1")
		require.NoError(t, err)
		require.Equal(t, "payment declined: card expired", tl.Info.Reason, "history %v", kinds(tl))
		ids := nb.commandIDs(t)
		require.Len(t, ids["inventory.release"], 1, "the compensation reaches the renamed handler's streams: %v", ids)
	})
}

// TestCompensationAfterARenameWithoutCatalog: the same without
// EngineConfig.Commands: the compensation is appended under the new name,
// not the old one, whose stream the renamed handler never reads (command
// package doc).
func TestCompensationAfterARenameWithoutCatalog(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		ctx := context.Background()
		store := newStore(t, mk)
		old := newBareOn(t, store, orderSaga(false))
		old.deliver(t, old.append(t, "order-1", OrderPlaced{OrderID: "1", Total: 30}))
		old.deliver(t, old.append(t, "order-1", StockReserved{OrderID: "1"}))

		eng2, err := saga.NewEngine(&saga.EngineConfig{Store: renamedBuild{Store: store, reg: registryAfterRename(t)}, Sagas: []saga.Definition{orderSaga(false)}})
		require.NoError(t, err)
		nb := bare{store: store, engine: eng2}
		nb.deliver(t, old.append(t, "order-1", PaymentDeclined{OrderID: "1", Reason: "card expired"}))

		tl, err := eng2.Show(ctx, orders, "1")
		require.NoError(t, err)
		require.Equal(t, saga.StatusFailed, tl.Info.Status)
		ids := nb.commandIDs(t)
		require.Len(t, ids["inventory.release"], 1, "sent under the new name, where its handler reads: %v", ids)
		require.Empty(t, ids["stock.release"], "sent under the old name, to %s, which no handler reads", command.StreamFor("stock.release", "1"))
	})
}
