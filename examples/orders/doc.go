// Package orders is converge's example domain and the workflow `converge
// demo` runs: Order, Inventory and Payment aggregates with command
// handlers, an order-fulfilment saga (placed → credit check → reserve
// stock → charge payment → confirm, with compensations), and three read
// models: order_summary (user-facing, eventual, 2s SLA), customer_spending
// (analytics, eventual, 30s SLA) and customer_orders (strong). The saga's
// credit check reads order_summary through a consistency gate. No card
// number is kept: Place tokenizes the card (Tokenize), and events,
// commands and saga states carry the token and the last four digits.
//
// NewApp wires all of it on a *memstore.Store or a *pgstore.Store; see
// README.md for the walk-through.
package orders
