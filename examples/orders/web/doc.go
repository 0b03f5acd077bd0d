// Package web serves the order workflow over HTTP: a JSON API in which
// every write returns a consistency token and every read honours one, a
// page that places orders and follows them from pending to confirmed or
// cancelled, and an operator's dashboard. Pages and scripts are embedded:
// nothing to build.
//
// The package talks to the domain through two small interfaces, Orders
// (place, get, list) and Ops (sagas, retry, cancel, dead letters); app.go
// implements them over the order service of examples/orders (orders.NewApp
// on a converge.Client: read models, the fulfilment saga, command
// handlers) and is the only file that knows that domain. Its Ops are the
// client's saga engine (instances by status, stuck and failed ones with
// their timelines, Retry, Cancel) and the dead letters of the read models
// and of the saga processor.
//
// # Routes
//
//	GET  /                       the order page
//	GET  /dashboard              the operator's dashboard
//	POST /orders                 {"customer_id", "sku", "qty", "card"} → 202 {"order_id", "status", "position", "href"},
//	                             X-Consistency-Position, Location; safe to retry with an Idempotency-Key
//	GET  /orders/{id}            the order, waiting for the client's token first:
//	                             {"order_id", "customer_id", "sku", "qty", "amount_cents", "status", "reason", "position"}
//	                             status is pending, confirmed or cancelled (with the reason);
//	                             amount_cents is the total the domain priced
//	GET  /orders?customer=ID     a page of the customer's orders (limit, after; "next" and a Link header)
//	GET  /live/orders            WebSocket of order updates (package consistency/live's protocol)
//	GET  /api/sagas              {"counts", "sagas"}; ?status= (one of the saga engine's), ?stuck=true, ?limit=
//	GET  /api/sagas/{id}         one instance with its timeline (for this domain the id is the order id)
//	POST /api/sagas/{id}/retry   {} or an empty body, as Content-Type: application/json → 202
//	                             (without it 415: the type makes a browser ask before another
//	                             site's page can retry or cancel); also /cancel
//	GET  /api/dead-letters       {"dead_letters"}
//	GET  /api/lag                every projection's lag over the last minutes, with its SLA; the
//	                             latest verdict's time (sampled_at) and how old it may get
//	                             (stale_after_ms) before the dashboard shows it as no longer current
//	GET  /read-models            the read-model catalog, when Config.Catalog is set
//
// Errors are application/problem+json (RFC 9457), with "errors" listing
// the invalid fields of a 422. Bodies are capped (413), must be
// application/json (415) and may hold no unknown fields, no field named in
// another case ("CUSTOMER_ID") and no field twice (400). A live
// subscription to an id no order can have reads nothing. A request
// whose context ended before it was answered (the client went away, the
// server is stopping) is a 503 with Retry-After, logged at Debug: only
// the server's own failures are 500s logged as errors. Such a request may
// still have taken effect: see below for retrying a POST /orders.
//
// # Retrying an order
//
// A POST /orders whose answer never came (a timeout, a dropped connection,
// a 503 for a request that ended first) may or may not have placed the
// order, and sending it again as it was places a second one. Send an
// Idempotency-Key header (the IETF httpapi draft's name) and send it again
// with the same key and the same body: the order is placed once, and every
// retry, also after the order settled, is answered as the first request
// was: 202 with the same order_id, position and Location. A key is 1 to
// MaxIdempotencyKeyLen bytes of printable ASCII other than space and ','
// (a UUID will do), taken as sent, case included, and the header comes
// once; anything else is a 400 (ProblemInvalidParameter, "parameter":
// "Idempotency-Key") that places nothing. A key names one order of one
// customer, for good: the same key from another customer is another
// order, and the same key with another order (another sku, qty or card)
// is a 422 (ProblemIdempotencyKeyReused) that places nothing, so a new
// order needs a new key. A request refused before anything was placed (a
// 4xx) leaves its key unused. Without the header every POST places a new
// order. Orders.Place gets the key in PlaceOrder.IdempotencyKey.
//
// # What a client checks
//
// Send the token of your write back in X-Consistency-Position (or
// ?consistency_position=) and GET /orders/{id} answers 200 only with the
// order as it is at or after that write. A read whose bounded wait ran out
// is never a 2xx: 404 with type ProblemNotYetVisible while the order is not
// in the read model yet, 503 with type ProblemStale (and the older state in
// "order") while it is there but behind; both carry X-Consistency-Stale:
// true and Retry-After. So the simplest client loop, POST and then GET with
// the token until response.ok, ends holding the order as it is after the
// write. A list (GET /orders) is answered 200 either way, labelled by
// X-Consistency-Stale and "stale".
//
// The order page shows no order as current unless it is: an order the
// live hub will not follow (too many subscriptions for one page) is
// labelled "not followed live" and re-read instead, and the page gives up
// the subscriptions of settled orders; one whose snapshot failed says it
// may be out of date until a read succeeds; and on every (re)connection
// the page re-reads each unsettled order with its token, showing one the
// server no longer has (an in-memory server restarted) as unknown.
//
// # Wiring
//
// Build the domain (NewApp for examples/orders), then the Server over it,
// then start the domain: see the package example. Give the Server a
// LagHistory that follows the client's lag monitor (App.Lag) to fill the
// dashboard's chart, each read model against the SLA it declares.
package web
