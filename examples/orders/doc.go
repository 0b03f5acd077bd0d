// Package orders is the order/payment workflow that `converge demo` runs:
// events, an eventually consistent order summary, a strongly consistent
// per-customer count, and a payment step that decides only on read models
// that have caught up with the event it handles. See README.md.
package orders
