package memstore_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Total   int    `json:"total"`
}

type OrderShipped struct {
	OrderID string `json:"order_id"`
}

func Example() {
	ctx := context.Background()
	reg := events.NewRegistry()
	// The names, not the Go types, are stored: keep them stable.
	events.Register[OrderPlaced](reg, "order_placed")
	events.Register[OrderShipped](reg, "order_shipped")

	store, err := memstore.New(&memstore.Config{Registry: reg})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	res, err := store.Append(ctx, "order-42", events.NoStream,
		events.Event{Data: OrderPlaced{OrderID: "42", Total: 1999}},
		events.Event{Data: OrderShipped{OrderID: "42"}},
	)
	if err != nil {
		panic(err)
	}
	fmt.Println("appended versions", res.FirstVersion, "to", res.LastVersion)

	// A writer that read the stream before the append now conflicts.
	_, err = store.Append(ctx, "order-42", events.NoStream, events.Event{Data: OrderShipped{OrderID: "42"}})
	var conflict *events.WrongExpectedVersionError
	if errors.As(err, &conflict) {
		fmt.Println("conflict: the stream is at version", conflict.Actual)
	}

	envs, err := store.ReadStream(ctx, "order-42", 1, 0)
	if err != nil {
		panic(err)
	}
	for _, env := range envs {
		v, err := reg.Decode(env)
		if err != nil {
			panic(err)
		}
		fmt.Printf("v%d %s %+v\n", env.Version, env.Type, v)
	}
	// Output:
	// appended versions 1 to 2
	// conflict: the stream is at version 2
	// v1 order_placed {OrderID:42 Total:1999}
	// v2 order_shipped {OrderID:42}
}

// A caller that retries an append itself (after events.ErrOutcomeUnknown,
// or when a message is redelivered) fixes the event ids first: the retry
// then returns the original result and stores nothing twice, even with the
// Exactly(n) of the first attempt.
func ExampleStore_Append_retry() {
	ctx := context.Background()
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, "order_placed")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	evs := events.AssignIDs([]events.Event{{Data: OrderPlaced{OrderID: "42", Total: 1999}}})
	first, err := store.Append(ctx, "order-42", events.Exactly(0), evs...)
	if err != nil {
		panic(err)
	}
	// Say the reply was lost: append the same events again.
	again, err := store.Append(ctx, "order-42", events.Exactly(0), evs...)
	if err != nil {
		panic(err)
	}
	version, _ := store.StreamVersion(ctx, "order-42")
	fmt.Println("same result:", again.Token == first.Token && again.EventIDs[0] == first.EventIDs[0])
	fmt.Println("stream version:", version)

	// Reusing the id for another event is a mistake, and says so.
	evs[0].Data = OrderPlaced{OrderID: "42", Total: 5}
	_, err = store.Append(ctx, "order-42", events.AnyVersion, evs...)
	fmt.Println(errors.Is(err, events.ErrDuplicateEvent))
	// Output:
	// same result: true
	// stream version: 1
	// true
}

// placeOrder is the package documentation's example: a store on a
// registry, and an append that starts a stream.
func placeOrder(ctx context.Context) error {
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, "order_placed")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	if err != nil {
		return err
	}
	defer store.Close()
	res, err := store.Append(ctx, "order-42", events.NoStream,
		events.Event{Data: OrderPlaced{OrderID: "42"}})
	if err != nil {
		return err
	}
	fmt.Println("order-42 is at version", res.LastVersion)

	envs, err := store.ReadStream(ctx, "order-42", 1, 0)
	if err != nil {
		return err
	}
	placed, err := events.DecodeAs[OrderPlaced](reg, envs[0])
	if err != nil {
		return err
	}
	fmt.Printf("%s %+v\n", envs[0].Type, placed)
	return nil
}

func ExampleNew() {
	if err := placeOrder(context.Background()); err != nil {
		fmt.Println(err)
	}
	// Output:
	// order-42 is at version 1
	// order_placed {OrderID:42 Total:0}
}
