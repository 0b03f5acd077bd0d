// Package command runs command handlers on Watermill's cqrs command
// processor, with converge's feed as the transport: a command is an event
// of its own stream (StreamFor), appended by the sender in its own unit of
// work, so it leaves if and only if the sender's step commits, and it is
// delivered to its handler by a feed.Subscriber of its category.
//
//	p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router})
//	if err != nil {
//		return err
//	}
//	err = p.AddHandlers(command.Handle("charge-payment", store, payments,
//		func(c ChargePayment) string { return "payment-" + c.OrderID },
//		func(ctx context.Context, acct Account, c ChargePayment) ([]any, error) {
//			if acct.Blocked {
//				return nil, command.Reject("account blocked")
//			}
//			return []any{PaymentCharged{OrderID: c.OrderID}}, nil
//		}))
//
// Handle loads the aggregate, decides, and appends with the expected
// version (events.Update, retried on conflict) in the delivery's unit of
// work, with event ids derived from the command id: a command delivered
// twice appends nothing the second time and reports the first result. The
// events carry the command's correlation id (a saga's instance id) and the
// command id as causation id, so they reach the saga that sent it. A
// decision that returns Reject(reason) appends a Rejected event instead,
// on the same correlation and naming the same sender (MetaSender), which
// the saga that sent the command handles like any other event (the saga
// engine delivers it to no other saga type). So
// does a decision whose events the store refuses (events.ErrInvalidEvent:
// a payload over the limit, a NUL in a string, an invalid aggregate stream
// id), with the store's reason: deciding again would give the same, so
// retrying it would only hold up the commands behind it. For the same
// reason a command whose payload does not decode into its type (another
// service's schema, a schema version newer than this build's, an
// upcaster or UnmarshalJSON that panics on it) is rejected by the
// Processor, saying why, before any handler sees it; a redelivery reports
// that rejection even once a later build can decode it. A reason,
// whatever it holds, is stored as converge stores free text: NUL and
// invalid UTF-8 as U+FFFD, cut at 4 KiB, and cut further where the
// Rejected event would not fit the store's Limits.MaxPayloadBytes (JSON
// writes '<', '>', '&' and control characters in six bytes each). A
// command whose own metadata leaves no room for the Rejected event's (it
// adds the command's id as causation, and the sender), one appended by
// another tool near the metadata limit, is rejected in its result alone,
// without the event, rather than fail at every delivery.
//
// A command type has one handler: results are kept by command id, so a
// second handler of the type would find the first's result and report it
// without acting. AddHandlers refuses one, in the same call or a later
// one. A handler's name names its feed consumer ("command.<name>"), so
// AddHandlers also refuses a name no lease can be held under (a control
// character, invalid UTF-8, checkpoint names over feed.MaxLeaseTextBytes);
// a refused call adds none of its handlers.
//
// Each handler reads its command category with one consumer by default,
// so its commands run one at a time. ProcessorConfig.Partitions splits a
// handler's commands by their stream over that many consumers of its own,
// delivered to the handler concurrently. A command's stream is its type's
// category and its sender's correlation id (StreamFor), so the split is
// by sender, not by aggregate: one sender's commands run in order,
// different senders' in parallel. Two senders' commands for one aggregate
// may therefore run at once; neither is lost, as each decision is appended
// with the aggregate's expected version and decided again, on the state
// the other left, after a conflict. Raise the Subscriber's CommitBatch
// too, so a handler that is behind applies many commands per transaction;
// the first command of such a unit looks up the earlier results of all of
// them in one statement (feed.Rows.Prefetch), where each would otherwise
// take a round trip of its own.
//
// A command has one outcome even when two units deliver it at once: the
// consumers of two names while a rolling deploy changes Partitions or
// renames a handler, say. Before it looks up a command's result, a unit
// claims the command (a row written in the unit, and deleted again before
// it commits): on PostgreSQL another unit's claim of it waits until the
// first unit ends, then finds its result; in memory the later commit
// conflicts and the command comes again. The first command of a unit
// claims all of them, in the statement before the look-up and the same
// round trip.
//
// A command type without a handler is not silently dropped: Processor
// implements saga.CommandCatalog, and an engine given it fails a step that
// sends such a command, with the reason in the instance's history.
//
// A command type's stored name names its command streams, which its
// handler reads. Renaming it (events.Alias keeps old events decoding)
// leaves commands sent under the old name unread: let the handler catch
// up with them before deploying the rename.
package command
