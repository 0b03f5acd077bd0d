// Package feed turns converge's global event order into Watermill messages.
//
// A Source (memstore.Store or pgstore.Store) offers the feed: every stored
// event in one gap-free global order, a wake-up signal for new events, and
// durable, leased checkpoints. On top of it:
//
//   - Subscriber is a Watermill message.Subscriber. Each Subscribe call runs a
//     consumer that delivers events one at a time in global order and moves
//     its checkpoint when a message is Acked. The handler's writes and the
//     checkpoint commit in one unit of work (on PostgreSQL one transaction,
//     reached with pgstore.TxFromContext(msg.Context())), so a projection
//     updated through it is exactly as far as its checkpoint says. A Nack
//     rolls the writes back and delivers the same event again after a
//     backoff. Processes running the same consumer name elect one deliverer
//     through a lease; the others stand by and take over.
//   - Publisher is a Watermill message.Publisher that appends each message as
//     an event, so Watermill handlers and cqrs buses can write to the store.
//
// Topics: TopicAll ("$all", or "") is the whole feed; any other topic is a
// category, the streams named topic or starting with topic + "-". A
// Publisher appends to the stream named by the topic (or by the MetaStreamID
// metadata), so a Subscriber of the same topic receives it.
//
// Delivered messages carry the event in their metadata (MetaStreamID,
// MetaVersion, MetaType, MetaToken, ...); TokenFromMessage and
// EnvelopeFromMessage give it back typed.
//
// A projection on the Watermill router:
//
//	sub, err := feed.NewSubscriber(store, &feed.SubscriberConfig{ConsumerName: "orders-projection"})
//	if err != nil {
//		return err
//	}
//	router.AddConsumerHandler("orders-projection", "order", sub, func(msg *message.Message) error {
//		env, err := feed.EnvelopeFromMessage(msg)
//		if err != nil {
//			return err
//		}
//		placed, err := events.DecodeAs[OrderPlaced](store.Registry(), env)
//		if err != nil {
//			return err
//		}
//		tx, err := pgstore.TxFromContext(msg.Context())
//		if err != nil {
//			return err
//		}
//		_, err = tx.Exec(msg.Context(), `INSERT INTO orders (id, amount) VALUES ($1, $2)`, placed.OrderID, placed.Amount)
//		return err // nil: Ack, the row and the checkpoint commit together
//	})
//
// # Delivery guarantees
//
// Delivery is at least once and in global order: the next event is not
// delivered before the current one is Acked. Writes made through the unit
// (pgstore.TxFromContext) take effect exactly once, because they commit with
// the checkpoint and a consumer that lost its lease cannot commit (fencing).
// Side effects outside the unit (HTTP calls, another database, memstore,
// which has no transactions) may happen again and must be idempotent.
//
// The consumer waits for new events on Source.Wake, with three documented
// polls: FallbackPollInterval while push is unhealthy, SafetyPollInterval
// always (a wake-up is lost when a writer dies between its commit and its
// notification), and a short backoff while Batch.Pending says events are
// committed but held back by an older open transaction.
//
// # Leases and failover
//
// Processes running the same consumer share one lease; the holder renews it
// every RenewInterval, the others try to take it as often. When the holder
// dies, a standby takes over once the lease expires: measured with kill -9,
// between about 2/3 and 4/3 of LeaseTTL (see SubscriberConfig.LeaseTTL).
// A holder that is frozen rather than dead (a stopped VM, a long pause)
// keeps its open transaction, and with it the feed, until it wakes.
//
// Subscriber.Status says, without asking the Source, whether each consumer
// holds its lease or stands by, and whether calls to the Source are
// failing (degraded since when, with the last error), with counts of lease
// events; SubscriberConfig.OnLeaseChange reports every acquisition, loss and
// release as it happens.
//
// Checkpoint names: CheckpointName(ConsumerName, topic) is ConsumerName for
// the whole feed and ConsumerName + "/" + topic for a category, so one
// Subscriber may follow several topics, each with its own position. Renaming
// a consumer (or changing its topic) starts it from the beginning of the feed.
package feed
