// Package consistency lets reads say how fresh they are, and wait, within a
// deadline, until they are fresh enough.
//
// # Tokens
//
// Every append returns an events.Token: a position in the global order of
// events. Read models are built by projections that follow that order and
// record how far they got (their checkpoint). A read model whose checkpoint
// is at or past a token reflects every event up to it. So a client that
// sends back the token of its own write can be answered from a read model
// that has caught up with it: read-your-own-writes, without coupling the
// read side to the write side.
//
// Over HTTP, write handlers return the token in X-Consistency-Position
// (SetPosition) and clients send it back on reads, in the same header or
// the consistency_position query parameter. Middleware does the rest.
// Browsers on another origin see these headers only when the CORS
// response lists them in Access-Control-Expose-Headers (and the preflight
// allows X-Consistency-Position in Access-Control-Allow-Headers).
//
// # Waits
//
// A Tracker holds the in-process view of every projection's checkpoint.
// Checkpoint moves reach it by push: a feed.CheckpointWatcher (PostgreSQL
// LISTEN, or the in-memory store) calls Advance, and Advance wakes exactly
// the waiters of that name. Nobody polls per request. While push is down
// (TrackerConfig.PushHealthy reports false), or when there is no Watcher,
// one shared loop re-reads the positions of names somebody waits on or
// whose position it knows, once per FallbackInterval, and once more when
// push is back, so a rewind announced during the outage is not missed.
// While push is up the same loop re-reads, once per FallbackInterval, the
// names that had waits at two ticks in a row, and those a wait ended stale
// on since the last tick: a writer that dies, or loses
// its connection, between committing a checkpoint move and announcing it
// leaves a move that push never delivers, and waits on a model that does
// not move again would otherwise read stale for ever. A name whose waits
// push answers in time costs no read, one waited on without pause (or
// whose waits keep ending stale) one read per interval, and the reads are
// one per name, not one per wait.
//
// Every wait has a deadline: the caller's context deadline,
// TrackerConfig.DefaultTimeout (2s) when it has none, and never more than
// TrackerConfig.MaxTimeout (10s). A flood of waits cannot exhaust the
// process: past TrackerConfig.MaxWaiters, waits do not block.
//
// # Staleness
//
// A wait that runs out of time is not an error. It returns a Status with
// Stale set, the checkpoint the read models did reach, and how many events
// they are behind when a Counter is configured; the read goes ahead and
// the answer is flagged stale (X-Consistency-Stale: true), so the UI can
// show "pending" rather than hide the delay. Wait fails only when called
// with no names, inside a unit of work (ErrWaitInUnit), or when the caller
// cancels its context.
//
// A token names a position, not the store that issued it. One past every
// stored event is recognised (ReasonAhead, when a Counter is configured),
// but a token from another store that happens to lie behind this one's
// checkpoint is taken as reached. On PostgreSQL, tokens start with the
// transaction id, which every schema of a database shares: in a
// schema-per-tenant set-up, a token from tenant A's write, sent to tenant
// B's endpoints, reads as fresh there once B has moved past that
// transaction, although B holds no such write. Keep tokens within the
// tenant they came from (route by tenant before the middleware runs).
//
// Which read models are strongly and which eventually consistent is
// declared in a Catalog, which serves the list as JSON and renders the
// table the docs show.
//
// # Example
//
//	tr, err := consistency.NewTracker(&consistency.TrackerConfig{
//		Positions:   store.Checkpoints(), // seeds and fallback
//		Watcher:     store,               // push: checkpoint moves
//		PushHealthy: store.PushHealthy,
//	})
//	if err != nil {
//		return err
//	}
//	if err := tr.Start(ctx); err != nil {
//		return err
//	}
//	defer func() { _ = tr.Stop(context.Background()) }()
//
//	// In code (orders.Get is your read-model query):
//	res, err := consistency.Read(ctx, tr, tok, []string{"order_summary"},
//		func(ctx context.Context) (Order, error) { return orders.Get(ctx, id) })
//	if err != nil {
//		return err
//	}
//	if res.Stale {
//		log.Printf("order %s: shown as pending, its read model is behind", id)
//	}
//	// A stale wait still answers: the query gets its own budget
//	// (TrackerConfig.QueryTimeout) once the wait's deadline is spent.
//
//	// Over HTTP (getOrder is your http.Handler):
//	mux.Handle("GET /orders/{id}", consistency.Middleware(tr, &consistency.HTTPConfig{
//		Names: []string{"order_summary"},
//	})(getOrder))
package consistency
