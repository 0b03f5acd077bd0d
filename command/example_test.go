package command_test

import (
	"context"
	"fmt"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

type (
	// ChargePayment is a command: charge the payment of an order.
	ChargePayment struct {
		OrderID string `json:"order_id"`
		Cents   int    `json:"cents"`
	}
	// PaymentCharged is what the handler decides when it may charge.
	PaymentCharged struct {
		OrderID string `json:"order_id"`
	}
	// AccountBlocked blocks the account an order's payment is charged to.
	AccountBlocked struct{}
	// Account is the state the handler decides on.
	Account struct{ Blocked bool }
)

// payments folds a payment stream into the account it is charged to.
var payments = events.Aggregate[Account]{Apply: func(acct Account, ev any) (Account, error) {
	if _, ok := ev.(AccountBlocked); ok {
		acct.Blocked = true
	}
	return acct, nil
}}

// A command handler on a Watermill router: a command sent for order 1 is
// charged, one for order 2, whose account is blocked, is rejected, and
// the rejection reaches the sender's correlation as an event.
func Example() {
	ctx := context.Background()
	reg := events.NewRegistry()
	events.Register[ChargePayment](reg, "payment.charge")
	events.Register[PaymentCharged](reg, "payment.charged")
	events.Register[AccountBlocked](reg, "payment.account_blocked")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		panic(err)
	}

	if err := addPaymentHandler(store, router); err != nil {
		panic(err)
	}

	running, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := router.Run(running); err != nil {
			panic(err)
		}
	}()
	defer func() {
		stop()
		_ = router.Close()
		<-done
	}()
	<-router.Running()

	if _, err := store.Append(ctx, "payment-2", events.NoStream, events.Event{Data: AccountBlocked{}}); err != nil {
		panic(err)
	}
	// Send a command for each order, as a saga step does: appended to the
	// command's stream, with the sender's correlation id.
	for _, order := range []string{"1", "2"} {
		_, err := store.Append(ctx, command.StreamFor("payment.charge", "order-"+order), events.AnyVersion, events.Event{
			Data: ChargePayment{OrderID: order, Cents: 4200}, Metadata: events.Metadata{CorrelationID: "order-" + order},
		})
		if err != nil {
			panic(err)
		}
	}

	// The outcomes: the events appended to the payment stream of order 1,
	// and the rejection sent back to order 2's sender.
	for _, stream := range []string{"payment-1", command.StreamFor(command.RejectedType, "order-2")} {
		env := awaitEvent(ctx, store, stream)
		ev, err := reg.Decode(env)
		if err != nil {
			panic(err)
		}
		if rej, ok := ev.(command.Rejected); ok {
			fmt.Printf("%s: rejected (%s)\n", env.Metadata.CorrelationID, rej.Reason)
		} else {
			fmt.Printf("%s: %T %+v\n", env.StreamID, ev, ev)
		}
	}
	// Output:
	// payment-1: command_test.PaymentCharged {OrderID:1}
	// order-2: rejected (account blocked)
}

// addPaymentHandler adds the handler of ChargePayment commands to router,
// as the package doc shows.
func addPaymentHandler(store command.Store, router *message.Router) error {
	p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router})
	if err != nil {
		return err
	}
	err = p.AddHandlers(command.Handle("charge-payment", store, payments,
		func(c ChargePayment) string { return "payment-" + c.OrderID },
		func(ctx context.Context, acct Account, c ChargePayment) ([]any, error) {
			if acct.Blocked {
				return nil, command.Reject("account blocked")
			}
			return []any{PaymentCharged{OrderID: c.OrderID}}, nil
		}))
	return err
}

// awaitEvent returns the last event of stream once it has one, woken by
// the store's commits.
func awaitEvent(ctx context.Context, store *memstore.Store, stream string) events.Envelope {
	deadline := time.After(10 * time.Second)
	for {
		wake := store.Wake() // taken before the read, so no commit is missed
		v, err := store.StreamVersion(ctx, stream)
		if err != nil {
			panic(err)
		}
		if v > 0 {
			envs, err := store.ReadStream(ctx, stream, v, 1)
			if err != nil {
				panic(err)
			}
			return envs[0]
		}
		select {
		case <-wake:
		case <-deadline:
			panic("no event in " + stream)
		}
	}
}
