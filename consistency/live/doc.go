// Package live pushes read-model updates to browsers over WebSocket, so a
// page learns that a projection has caught up instead of polling for it.
//
// A client subscribes to entity ids (the keys of read-model rows). Whenever
// a projection commits a row for a subscribed entity, the projection runner
// calls Hub.Publish and the client receives the row and its position, the
// events.Token of the event that produced it. A client that holds the token
// of its own write knows the write is visible once a pushed position is at
// or past it. Until then it should say so ("pending…"): the consistency
// window is made visible, not hidden. PageHandler serves a tiny demo page
// that follows one entity and shows "pending…" in place of the row and its
// position until its first row arrives (its connection state says
// "connected" once the subscription is acknowledged); it holds no token of
// its own to compare positions with.
//
// Updates come from the process that applies them: a projection's
// OnUpdate fires where its partition's lease is held, so a Hub in a process
// that stands by for that projection receives nothing. Serve the WebSocket
// from every process that runs the projection (each Hub then pushes what
// its own process applies), or route subscribers to the lease holder.
//
// # Protocol
//
// Connect to Hub.Handler, subscribing in the URL (?entity=order-1&entity=
// order-2; these are in place before the upgrade response) or with JSON
// text messages:
//
//	→ {"action":"subscribe","entity":"order-1"}
//	← {"type":"subscribed","entity":"order-1"}
//	← {"type":"updated","entity":"order-1","data":{…row…},"position":"v2.----------3----------k"}
//	→ {"action":"unsubscribe","entity":"order-1"}
//	← {"type":"unsubscribed","entity":"order-1"}
//
// Updates of one entity arrive in the order they were published; nothing
// for an entity arrives before its "subscribed" or after its
// "unsubscribed". A bad request (malformed JSON, an unknown action, an
// empty entity id or one over MaxEntityIDLen bytes, too many subscriptions)
// is answered with {"type":"error","error":"…"} and the connection stays
// open; a message over MaxClientMessageSize closes the connection with
// websocket.StatusMessageTooBig.
//
// # Slow clients
//
// Publish never waits for a client. Each client has room for
// Config.SendBuffer published updates waiting to be sent; a client with no
// room left for the next one does not read what it subscribed to, and is
// dropped, closed with websocket.StatusPolicyViolation and the reason "too
// slow: send queue full", and counted in Stats.Dropped. It can reconnect
// and resubscribe; with a Snapshot configured it then gets the current
// state again, so dropping loses no state, only intermediate updates.
//
// Replies to a client's own requests (acknowledgements, snapshots, errors)
// never drop it: they have room of their own, and a client that sends
// requests faster than it reads the replies is slowed instead, its next
// request handled only once there is room for its replies. Requests are
// handled one at a time, in order, while the connection goes on being
// read (so it answers pings while snapshots are read): up to
// MaxSubscriptionsPerClient of them wait to be handled, and beyond that
// the next one is read only once there is room. So a page may
// resubscribe to all its entities in one burst on reconnect.
//
// Clients that vanish without closing are found by pings
// (Config.PingInterval) or by the next failed write, and removed.
//
// # Snapshots
//
// With Config.Snapshot set, each subscription starts with the entity's
// current row, sent as an "updated" message with "snapshot": true, so a
// client does not miss state committed before it subscribed. The ordering
// with concurrent Publish calls is handled like this: the subscription is
// registered first, in a pending state in which Publish buffers its updates
// for it (up to SendBuffer); then Snapshot reads the row and its position;
// then, atomically with respect to Publish, the snapshot is queued, followed
// by the buffered updates whose positions are after the snapshot's, and the
// subscription becomes live. Because Publish is called after a row commits,
// an update published before the subscription was registered is in the
// snapshot; one published after (while the snapshot is read, or once the
// subscription is live) is sent unless the snapshot already contains it.
// So the client sees the current state, then every later update, in
// order, with no gap, no step back and no repeat.
//
// # Example
//
// Serve the Hub and its demo page, with a Snapshot that reads a row and the
// position it reflects (readOrderRow, a SnapshotFunc of yours, in one
// transaction); ExampleConfig_snapshot runs this end to end:
//
//	hub, err := live.NewHub(&live.Config{Snapshot: readOrderRow})
//	if err != nil {
//		return err
//	}
//	defer hub.Close()
//	mux := http.NewServeMux()
//	mux.Handle("/live", hub.Handler())
//	mux.Handle("/live/page", live.PageHandler("/live")) // open /live/page?entity=order-1
//
// In the projection runner, after the transaction that wrote the row has
// committed, publish the row as JSON with the token of the event that
// produced it:
//
//	hub.Publish("order-1", rowJSON, env.Token)
package live
