package command_test

import (
	"context"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

type refundCmd struct {
	ID string `json:"id"`
}

// TestAHandlerNameIsTakenOnce: a handler named like one the Processor
// already has is refused with an error, not the router's panic, and
// nothing of the call is added.
func TestAHandlerNameIsTakenOnce(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	events.Register[Pay](reg, "pay")
	events.Register[refundCmd](reg, "refund")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	require.NoError(t, err)
	defer store.Close()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router})
	require.NoError(t, err)
	require.NoError(t, p.AddHandlers(cqrs.NewCommandHandler("dup", func(context.Context, *Deposit) error { return nil })))

	var callErr error
	var panicked any
	func() {
		defer func() { panicked = recover() }()
		callErr = p.AddHandlers(
			cqrs.NewCommandHandler("pay-handler", func(context.Context, *Pay) error { return nil }),
			cqrs.NewCommandHandler("dup", func(context.Context, *refundCmd) error { return nil }),
		)
	}()
	t.Logf("err=%v panic=%v handles(pay)=%v consumers=%d", callErr, panicked, p.Handles("pay"), len(p.Consumers()))
	require.Nil(t, panicked, "AddHandlers returns an error, it does not panic")
	require.Error(t, callErr)
	require.False(t, p.Handles("pay"), "nothing of the refused call is added")
	require.Len(t, p.Consumers(), 1)
}

// TestAHandlerNameTakenOnTheRouterIsAnError: a name another component
// took on the router is refused with an error, not the router's panic.
func TestAHandlerNameTakenOnTheRouterIsAnError(t *testing.T) {
	t.Parallel()
	reg := registry(t)
	events.Register[Pay](reg, "pay")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	require.NoError(t, err)
	defer store.Close()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	require.NoError(t, err)
	router.AddConsumerHandler("taken", "some-topic", gochannel.NewGoChannel(gochannel.Config{}, watermill.NopLogger{}), func(*message.Message) error { return nil })
	p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router})
	require.NoError(t, err)
	require.NotPanics(t, func() {
		err = p.AddHandlers(cqrs.NewCommandHandler("taken", func(context.Context, *Pay) error { return nil }))
	})
	require.ErrorContains(t, err, "taken")
	require.False(t, p.Handles("pay"))
}
