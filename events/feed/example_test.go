package feed_test

import (
	"context"
	"log"
	"os"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
)

type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Amount  int    `json:"amount"`
}

// projectOrders is the package documentation's example: a projection on
// the Watermill router whose rows commit with its checkpoint, in the
// transaction of the delivery's unit.
func projectOrders(store *pgstore.Store, router *message.Router) error {
	sub, err := feed.NewSubscriber(store, &feed.SubscriberConfig{ConsumerName: "orders-projection"})
	if err != nil {
		return err
	}
	router.AddConsumerHandler("orders-projection", "order", sub, func(msg *message.Message) error {
		env, err := feed.EnvelopeFromMessage(msg)
		if err != nil {
			return err
		}
		placed, err := events.DecodeAs[OrderPlaced](store.Registry(), env)
		if err != nil {
			return err
		}
		tx, err := pgstore.TxFromContext(msg.Context())
		if err != nil {
			return err
		}
		_, err = tx.Exec(msg.Context(), `INSERT INTO orders (id, amount) VALUES ($1, $2)`, placed.OrderID, placed.Amount)
		return err // nil: Ack, the row and the checkpoint commit together
	})
	return nil
}

// A projection on PostgreSQL, fed through the router: every OrderPlaced
// appended to a stream of the category "order" becomes a row of the
// application's orders table. (It needs a database with converge's
// migrations and that table, so it is compiled but not run.)
func ExampleNewSubscriber() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL"))
	if err != nil {
		log.Fatal(err)
	}
	defer pool.Close()
	reg := events.NewRegistry()
	events.Register[OrderPlaced](reg, "order_placed")
	store, err := pgstore.New(ctx, pool, &pgstore.Config{Registry: reg})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
	if err != nil {
		log.Fatal(err)
	}
	if err := projectOrders(store, router); err != nil {
		log.Fatal(err)
	}
	if err := router.Run(ctx); err != nil {
		log.Fatal(err)
	}
}
