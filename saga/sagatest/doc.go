// Package sagatest is the test fixture for sagas: given events, when an
// event, expect commands sent, state, timers scheduled or cancelled, and
// completion, on a virtual clock that jumps to fire timers, with read
// models that can be held back to watch a gated step park and then run on
// caught-up data.
//
//	fx := sagatest.New(t, &sagatest.Config{Registry: reg, Sagas: []saga.Definition{orders}})
//	fx.Given(sagatest.Event{Stream: "order-1", Data: OrderPlaced{OrderID: "1", Total: 30}})
//	fx.When(sagatest.Event{Stream: "order-1", Data: PaymentDeclined{OrderID: "1"}})
//	fx.ExpectCommands(ReleaseStock{OrderID: "1"})
//	fx.ExpectStatus("order_fulfilment", "1", saga.StatusFailed)
//
// The fixture runs the real engine (the same correlation functions,
// storage and timers) on an in-memory store by default, or on the store
// given in Config.Store, so one scenario can run on PostgreSQL too. It
// steps the feed itself, one unit per event, so every expectation holds the
// moment When returns: nothing waits on wall-clock time.
package sagatest
