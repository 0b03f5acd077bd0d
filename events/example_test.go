package events_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Cents   int    `json:"cents"`
}

type OrderPaid struct {
	OrderID string `json:"order_id"`
}

// The store's contract on the in-memory store; pgstore behaves the same.
func Example() {
	ctx := context.Background()
	reg := events.NewRegistry()
	// The names, not the Go types, are stored: keep them stable.
	events.Register[OrderPlaced](reg, "order_placed")
	events.Register[OrderPaid](reg, "order_paid")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	// NoStream: create the order only if it does not exist yet.
	placed, err := store.Append(ctx, "order-1", events.NoStream,
		events.Event{Data: OrderPlaced{OrderID: "1", Cents: 1999}})
	if err != nil {
		panic(err)
	}
	_, err = store.Append(ctx, "order-2", events.NoStream,
		events.Event{Data: OrderPlaced{OrderID: "2", Cents: 500}})
	if err != nil {
		panic(err)
	}

	// Exactly: two writers decided on version 1; only the first wins.
	paid, err := store.Append(ctx, "order-1", events.Exactly(placed.LastVersion),
		events.Event{Data: OrderPaid{OrderID: "1"}})
	if err != nil {
		panic(err)
	}
	_, err = store.Append(ctx, "order-1", events.Exactly(placed.LastVersion),
		events.Event{Data: OrderPaid{OrderID: "1"}})
	var conflict *events.WrongExpectedVersionError
	if errors.As(err, &conflict) {
		fmt.Printf("conflict: expected %s, the stream is at %d\n", conflict.Expected, conflict.Actual)
	}

	// ReadAll: every stream, in the one global order, each with its token.
	all, err := store.ReadAll(ctx, events.Token{}, 0)
	if err != nil {
		panic(err)
	}
	for _, env := range all {
		ev, err := reg.Decode(env)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s v%d %s %+v\n", env.StreamID, env.Version, env.Type, ev)
	}

	// A token travels as a string (an HTTP header, a JSON field) and
	// compares in global order: what came after the first order was placed?
	tok, err := events.ParseToken(placed.Token.String())
	if err != nil {
		panic(err)
	}
	after, err := store.ReadAll(ctx, tok, 0)
	if err != nil {
		panic(err)
	}
	fmt.Println("after order-1 was placed:", len(after), "events; the payment is the last:", after[len(after)-1].Token == paid.Token)
	// Output:
	// conflict: expected version 1, the stream is at 2
	// order-1 v1 order_placed {OrderID:1 Cents:1999}
	// order-2 v1 order_placed {OrderID:2 Cents:500}
	// order-1 v2 order_paid {OrderID:1}
	// after order-1 was placed: 2 events; the payment is the last: true
}
