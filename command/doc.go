// Package command runs command handlers on Watermill's cqrs command
// processor, with converge's feed as the transport: a command is an event
// of its own stream (StreamFor), appended by the sender in its own unit of
// work, so it leaves if and only if the sender's step commits, and it is
// delivered to its handler by a feed.Subscriber of its category.
//
//	p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router})
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
// on the same correlation, which the saga handles like any other event.
//
// A command type without a handler is not silently dropped: Processor
// implements saga.CommandCatalog, and an engine given it fails a step that
// sends such a command, with the reason in the instance's history.
package command
