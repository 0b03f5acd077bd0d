package live

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/internal/rawquery"
	"github.com/converge-es/converge/events"
)

// queryParamEntity is the query parameter that subscribes at connect.
const queryParamEntity = "entity"

// reasonTooSlow is the close reason of a client whose queue overflowed.
const reasonTooSlow = "too slow: send queue full"

// reasonShutdown is the close reason Close sends.
const reasonShutdown = "server shutting down"

var (
	errHubClosed      = errors.New("live: hub is closed")
	errTooManyClients = errors.New("live: too many clients")
)

// Hub pushes read-model updates to WebSocket clients subscribed to the
// updated entity. Create it with NewHub, mount Handler, call Publish from
// projection runners, and Close it on shutdown. All methods are safe for
// concurrent use.
type Hub struct {
	cfg        Config
	acceptOpts *websocket.AcceptOptions

	// baseCtx parents every connection's context; force cancels it, which
	// aborts every read and write and so closes every connection at once.
	baseCtx context.Context
	force   context.CancelFunc

	mu      sync.Mutex
	closed  bool
	clients map[*client]struct{}
	subs    map[string]map[*client]*subscription

	wg       sync.WaitGroup // one per connection being served
	conns    atomic.Int64   // the connections wg counts, for Shutdown to read
	dropped  atomic.Int64
	rejected atomic.Int64
}

// NewHub returns a Hub configured by cfg (nil means all defaults).
func NewHub(cfg *Config) (*Hub, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Hub{
		cfg:        c,
		acceptOpts: &websocket.AcceptOptions{OriginPatterns: c.AllowedOrigins},
		baseCtx:    ctx,
		force:      cancel,
		clients:    make(map[*client]struct{}),
		subs:       make(map[string]map[*client]*subscription),
	}, nil
}

// Publish sends data, the read-model row of entityID as of position pos, to
// every client subscribed to entityID. Call it after the transaction that
// wrote the row has committed, never before: a client must not see a row a
// rollback then takes back.
//
// Publish never blocks on clients: it only appends to each subscriber's
// bounded queue, and drops any subscriber with SendBuffer updates already
// waiting. Clients get the updates of one entity in the order Publish was
// called for it (concurrent calls are serialized, and every client sees
// them in the same order). data must be valid JSON encoded in UTF-8 (it
// goes out in a WebSocket text message, which a browser refuses, failing
// the connection, unless it is UTF-8); nil is sent as null. Publish does
// not keep data after it returns. Invalid data is logged and not sent.
// Publish after Close does nothing.
func (h *Hub) Publish(entityID string, data json.RawMessage, pos events.Token) {
	h.mu.Lock()
	defer h.mu.Unlock()
	subs := h.subs[entityID]
	if h.closed || len(subs) == 0 {
		return
	}
	if data == nil {
		data = json.RawMessage("null")
	}
	msg, err := (&Message{Type: TypeUpdated, Entity: entityID, Data: data, Position: pos.String()}).encode()
	if err != nil {
		h.cfg.Logger.Error("live: not publishing an update whose data is not valid JSON in UTF-8 (pass the row as the projection stored it)",
			"entity", entityID, "position", pos.String(), "error", err)
		return
	}
	for c, s := range subs {
		if s.pending {
			// The subscription waits for its snapshot; loadSnapshot sends
			// what the snapshot does not already contain.
			if c.bufferedLocked() >= h.cfg.SendBuffer {
				h.dropLocked(c)
				continue
			}
			s.buffered = append(s.buffered, pendingUpdate{msg: msg, pos: pos})
			continue
		}
		if s.covered != nil {
			if !pos.After(*s.covered) {
				continue // the snapshot had it: committed before it, published after
			}
			s.covered = nil
		}
		h.enqueueLocked(c, msg)
	}
}

// Handler returns the WebSocket endpoint. Clients subscribe with the query
// (?entity=order-1&entity=order-2; these subscriptions are in place before
// the upgrade response is sent) or by sending Request messages. See the
// package doc for the protocol. A request it refuses before the upgrade is
// answered with RFC 9457 problem details (application/problem+json).
//
// The upgrade hijacks the connection through the ResponseWriter as
// http.ResponseController does, so middleware in front of the Handler
// must pass on a writer that implements http.Hijacker or unwraps to one
// (an Unwrap() http.ResponseWriter method). When it does not, the
// Handler answers a WebSocket handshake with 501 Not Implemented, with
// problem details saying so, before any upgrade response.
func (h *Hub) Handler() http.Handler { return http.HandlerFunc(h.serveHTTP) }

// Stats reports the Hub's current load.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	st := Stats{
		Clients:  len(h.clients),
		Entities: len(h.subs),
		Dropped:  h.dropped.Load(),
		Rejected: h.rejected.Load(),
	}
	for c := range h.clients {
		st.Subscriptions += len(c.subs)
	}
	return st
}

// Close disconnects every client with websocket.StatusGoingAway and waits
// until every connection's goroutines have returned. Clients that do not
// acknowledge the close within WriteTimeout are cut off. New connections
// are refused with 503 from then on. Close may be called more than once.
func (h *Hub) Close() { _ = h.Shutdown(context.Background()) }

// Shutdown is Close bounded by ctx, for a process whose stop has a
// deadline: clients that have not acknowledged the close when ctx ends
// (or within WriteTimeout, if that comes first) are cut off then, so a
// client that never reads holds the stop up no longer than ctx allows.
// It returns ctx's error when ctx ended before every client had
// acknowledged, nil otherwise; either way every connection is closed
// when it returns. Shutdown and Close may be called more than once.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	if !h.closed {
		h.closed = true
		for c := range h.clients {
			c.stop(websocket.StatusGoingAway, reasonShutdown)
		}
	}
	h.mu.Unlock()

	t := time.AfterFunc(h.cfg.WriteTimeout, h.force)
	var cut atomic.Bool
	stopCut := context.AfterFunc(ctx, func() {
		// Judged by the connections still served, not by timing: with
		// none left (none ever, or all acknowledged) nothing is cut off,
		// even when ctx had ended before Shutdown was called.
		if h.conns.Load() > 0 {
			cut.Store(true)
		}
		h.force()
	})
	h.wg.Wait()
	t.Stop()
	stopCut()
	h.force()
	if cut.Load() {
		return fmt.Errorf("live: clients still connected when the shutdown's context ended were cut off: %w", context.Cause(ctx))
	}
	return nil
}

// serveHTTP answers every refusal with RFC 9457 problem details, as the
// rest of a converge HTTP API does, so a client handles one error format.
func (h *Hub) serveHTTP(w http.ResponseWriter, r *http.Request) {
	entities, err := h.queryEntities(r.URL.RawQuery)
	if err != nil {
		consistency.WriteProblemDetails(w, &consistency.Problem{
			Status: http.StatusBadRequest, Detail: "live: " + err.Error(), Parameter: queryParamEntity,
		})
		return
	}
	c, err := h.register(r.RemoteAddr, entities)
	switch {
	case errors.Is(err, errTooManyClients):
		h.rejected.Add(1)
		w.Header().Set("Retry-After", "5")
		consistency.WriteProblem(w, http.StatusServiceUnavailable, "",
			fmt.Sprintf("live: too many clients (MaxClients is %d); retry later", h.cfg.MaxClients))
		return
	case err != nil:
		consistency.WriteProblem(w, http.StatusServiceUnavailable, "", err.Error()+" (the server is shutting down); reconnect to another server or retry later")
		return
	}
	defer func() {
		h.conns.Add(-1)
		h.wg.Done()
	}()

	// Accept gets a writer that can be hijacked only when w can (itself or
	// through Unwrap, as http.ResponseController finds it): otherwise Accept
	// refuses before it sends 101 Switching Protocols, not after.
	hw := &handshakeWriter{ResponseWriter: w}
	var aw http.ResponseWriter = hw
	if canHijack(w) {
		aw = hijackingWriter{hw}
	}
	conn, err := websocket.Accept(aw, r, h.acceptOpts)
	if err != nil {
		h.remove(c)
		c.stop(0, "")
		c.cancel()
		if hw.status == http.StatusNotImplemented {
			h.cfg.Logger.Error("live: cannot upgrade: the ResponseWriter cannot be hijacked; serve the Handler over HTTP/1.1, "+
				"through middleware whose ResponseWriter implements http.Hijacker or Unwrap", "remote", r.RemoteAddr, "error", err)
		} else {
			h.cfg.Logger.Debug("live: refused connection", "remote", r.RemoteAddr, "error", err)
		}
		hw.writeRefusal()
		return
	}
	conn.SetReadLimit(MaxClientMessageSize)
	c.conn, c.raw = conn, hw.conn
	c.run(entities)
}

// queryEntities returns the entity ids of a URL's raw query, validated,
// without duplicates. A pair naming entity that url.ParseQuery would drop
// without a word (a bad %-escape, a ';') is an error, not an entity left
// out: the client would be upgraded without the subscription it asked for.
func (h *Hub) queryEntities(rawQuery string) ([]string, error) {
	ids, err := rawquery.Values(rawQuery, queryParamEntity)
	var qe *rawquery.Error
	if errors.As(err, &qe) {
		switch qe.Fault {
		case rawquery.Semicolon:
			return nil, fmt.Errorf("query parameter %s: the query contains ';', which does not separate query parameters: "+
				"separate them with '&', and encode a ';' inside an entity id as %%3B", queryParamEntity)
		case rawquery.BadName:
			return nil, fmt.Errorf("query parameter %s: its name is followed by a bad %%-escape: send it as %s=<id>", queryParamEntity, queryParamEntity)
		default:
			return nil, fmt.Errorf("query parameter %s: not %%-encoded correctly (%w): encode each entity id with url.QueryEscape", queryParamEntity, qe.Err)
		}
	}
	if err != nil {
		return nil, err
	}
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if err := validateEntityID(id); err != nil {
			return nil, fmt.Errorf("query parameter %s: %w", queryParamEntity, err)
		}
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	if len(out) > h.cfg.MaxSubscriptionsPerClient {
		return nil, fmt.Errorf("%d entities in the query, the limit is %d (MaxSubscriptionsPerClient)", len(out), h.cfg.MaxSubscriptionsPerClient)
	}
	return out, nil
}

// register adds a client subscribed to entities, with their
// acknowledgements queued, and counts it in wg.
func (h *Hub) register(remote string, entities []string) (*client, error) {
	// The acknowledgements are queued before the writer runs, so each needs
	// a slot of its own; SendBuffer more let replies to requests flow
	// without waiting for every one to be written.
	c := newClient(h, remote, h.cfg.SendBuffer+len(entities))
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, errHubClosed
	}
	if len(h.clients) >= h.cfg.MaxClients {
		return nil, errTooManyClients
	}
	h.clients[c] = struct{}{}
	for _, e := range entities {
		h.addSubLocked(c, e)
		c.replySlots <- struct{}{} // room for one per entity: never blocks
		h.replyLocked(c, (&Message{Type: TypeSubscribed, Entity: e}).mustEncode())
	}
	h.wg.Add(1)
	h.conns.Add(1)
	return c, nil
}

// subscribe handles a subscribe request of c, which is validated. It runs
// on c's worker, which handles c's requests one at a time.
func (h *Hub) subscribe(c *client, entity string) {
	ack := (&Message{Type: TypeSubscribed, Entity: entity}).mustEncode()
	if !c.reserveReply() {
		return
	}
	h.mu.Lock()
	if c.gone {
		h.mu.Unlock()
		return
	}
	if _, ok := c.subs[entity]; ok {
		h.replyLocked(c, ack)
		h.mu.Unlock()
		return
	}
	if len(c.subs) >= h.cfg.MaxSubscriptionsPerClient {
		h.replyLocked(c, errorMessage(entity, fmt.Sprintf(
			"too many subscriptions: the limit is %d; unsubscribe from another entity first", h.cfg.MaxSubscriptionsPerClient)))
		h.mu.Unlock()
		return
	}
	s := h.addSubLocked(c, entity)
	h.replyLocked(c, ack)
	h.mu.Unlock()
	if s.pending {
		h.loadSnapshot(c, entity, s)
	}
}

// unsubscribe handles an unsubscribe request of c. Nothing for entity is
// queued after the acknowledgement.
func (h *Hub) unsubscribe(c *client, entity string) {
	if !c.reserveReply() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if c.gone {
		return
	}
	if _, ok := c.subs[entity]; ok {
		delete(c.subs, entity)
		h.deleteSubLocked(c, entity)
	}
	h.replyLocked(c, (&Message{Type: TypeUnsubscribed, Entity: entity}).mustEncode())
}

// loadSnapshot reads the current state of entity for a pending
// subscription s of c, sends it, then sends the updates published
// meanwhile that the snapshot does not contain, and makes s live.
//
// Ordering: s was registered (pending) before Snapshot is called, so every
// Publish for entity from then on is buffered in s. Publish is called after
// its row commits, so an update published before s was registered is
// already in the snapshot. An update buffered in s may be in the snapshot
// too (its row committed before the snapshot read it), so updates at or
// before the snapshot's position are skipped, until a later one has been
// queued: past the snapshot, updates go through as published. The
// hand-over happens under h.mu, which Publish also holds, so no update
// falls between. A row can also commit before the snapshot reads it and be
// published only after the hand-over: Publish skips it by the same rule,
// carried on from where the buffered updates left it (s.covered), so the
// client gets the same updates whichever side of the hand-over they were
// published on.
//
// Room for the snapshot (or the error) is reserved before h.mu is taken:
// waiting for it with the lock held would stall every Publish.
func (h *Hub) loadSnapshot(c *client, entity string, s *subscription) {
	ctx, cancel := context.WithTimeout(c.ctx, h.cfg.SnapshotTimeout)
	data, pos, found, err := h.callSnapshot(ctx, entity)
	cancel()
	var snap []byte
	if err == nil && found {
		if data == nil {
			data = json.RawMessage("null")
		}
		snap, err = (&Message{Type: TypeUpdated, Entity: entity, Data: data, Position: pos.String(), Snapshot: true}).encode()
		if err != nil {
			err = fmt.Errorf("live: Config.Snapshot returned data that is not valid JSON in UTF-8: %w", err)
		}
	}
	if err != nil {
		found = false
		if c.ctx.Err() == nil {
			h.cfg.Logger.Error("live: snapshot failed; the client gets only later updates", "entity", entity, "error", err)
		}
	}

	var reply []byte
	switch {
	case err != nil:
		reply = errorMessage(entity, "could not read the current state; later updates will follow")
	case snap != nil:
		reply = snap
	}
	if reply != nil && !c.reserveReply() {
		return
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if c.gone || c.subs[entity] != s {
		if reply != nil {
			<-c.replySlots // not sent: give the room back
		}
		return
	}
	buffered := s.buffered
	s.pending, s.buffered = false, nil
	if reply != nil && !h.replyLocked(c, reply) {
		return
	}
	if found {
		s.covered = &pos
	}
	for _, u := range buffered {
		// The rule of Publish, for the updates it buffered.
		if s.covered != nil {
			if !u.pos.After(*s.covered) {
				continue // already in the snapshot
			}
			s.covered = nil
		}
		if !h.enqueueLocked(c, u.msg) {
			return
		}
	}
}

// callSnapshot calls Config.Snapshot, turning a panic into an error so that
// one bad read cannot take the process down.
// callSnapshot runs Config.Snapshot, for at most as long as ctx lasts
// (SnapshotTimeout, or the client's connection): a Snapshot that does not
// heed its context is abandoned then, so neither this client's worker nor
// Close waits for it. It runs on until it returns, and its result is
// dropped.
func (h *Hub) callSnapshot(ctx context.Context, entity string) (json.RawMessage, events.Token, bool, error) {
	type result struct {
		data  json.RawMessage
		pos   events.Token
		found bool
		err   error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		defer func() {
			if p := recover(); p != nil {
				r = result{err: fmt.Errorf("live: Config.Snapshot panicked: %v", p)}
			}
			done <- r
		}()
		r.data, r.pos, r.found, r.err = h.cfg.Snapshot(ctx, entity)
	}()
	select {
	case r := <-done:
		return r.data, r.pos, r.found, r.err
	case <-ctx.Done():
		return nil, events.Token{}, false, fmt.Errorf("live: Config.Snapshot did not return in time (make it heed its context): %w", ctx.Err())
	}
}

func (h *Hub) addSubLocked(c *client, entity string) *subscription {
	s := &subscription{pending: h.cfg.Snapshot != nil}
	c.subs[entity] = s
	m := h.subs[entity]
	if m == nil {
		m = make(map[*client]*subscription)
		h.subs[entity] = m
	}
	m[c] = s
	return s
}

func (h *Hub) deleteSubLocked(c *client, entity string) {
	m := h.subs[entity]
	delete(m, c)
	if len(m) == 0 {
		delete(h.subs, entity)
	}
}

// enqueueLocked queues a published update for c without waiting. When c
// already has SendBuffer updates waiting, c is dropped and enqueueLocked
// reports false.
func (h *Hub) enqueueLocked(c *client, msg []byte) bool {
	if c.gone {
		return false
	}
	select {
	case c.updateSlots <- struct{}{}:
	default:
		h.dropLocked(c)
		return false
	}
	return h.pushLocked(c, outgoing{msg: msg})
}

// replyLocked queues a reply to c's own request, for which the caller has
// reserved room, and reports false when c is gone.
func (h *Hub) replyLocked(c *client, msg []byte) bool {
	if c.gone {
		return false
	}
	return h.pushLocked(c, outgoing{msg: msg, reply: true})
}

// pushLocked queues out, whose slot is taken. send is sized for every slot,
// so it has room; should it not, dropping the client is still better than
// blocking the Hub.
func (h *Hub) pushLocked(c *client, out outgoing) bool {
	select {
	case c.send <- out:
		return true
	default:
		h.dropLocked(c)
		return false
	}
}

// dropLocked removes a client that cannot keep up and has it closed with
// StatusPolicyViolation.
func (h *Hub) dropLocked(c *client) {
	if c.gone {
		return
	}
	h.removeLocked(c)
	h.dropped.Add(1)
	h.cfg.Logger.Warn("live: dropped a client that does not keep up with updates",
		"remote", c.remote, "send_buffer", cap(c.updateSlots))
	c.stop(websocket.StatusPolicyViolation, reasonTooSlow)
}

func (h *Hub) remove(c *client) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.removeLocked(c)
}

func (h *Hub) removeLocked(c *client) {
	if c.gone {
		return
	}
	c.gone = true
	delete(h.clients, c)
	for e := range c.subs {
		h.deleteSubLocked(c, e)
	}
	c.subs = nil
}

// errorMessage encodes an error message about entity ("" for none).
func errorMessage(entity, text string) []byte {
	return (&Message{Type: TypeError, Entity: entity, Error: text}).mustEncode()
}

// maxRefusalDetail bounds the refusal text kept from websocket.Accept,
// which quotes request headers.
const maxRefusalDetail = 512

// handshakeWriter is the ResponseWriter websocket.Accept gets, wrapped in
// a hijackingWriter when the connection can be hijacked. It holds back the
// plain-text refusal Accept writes (403 for a foreign origin, 426 for a
// plain HTTP request, 501 for a connection that cannot be hijacked), so
// that writeRefusal answers with problem details instead.
type handshakeWriter struct {
	http.ResponseWriter
	conn    net.Conn
	status  int // of the refusal; 0 while Accept has refused nothing
	refusal []byte
}

func (h *handshakeWriter) WriteHeader(code int) {
	if code < 200 {
		h.ResponseWriter.WriteHeader(code) // 101 Switching Protocols
		return
	}
	h.status = code
}

func (h *handshakeWriter) Write(b []byte) (int, error) {
	if h.status == 0 {
		h.WriteHeader(http.StatusOK)
	}
	h.refusal = append(h.refusal, b[:min(len(b), maxRefusalDetail-len(h.refusal))]...)
	return len(b), nil
}

// writeRefusal answers with the refusal Accept wrote, as problem details.
func (h *handshakeWriter) writeRefusal() {
	if h.status == 0 {
		return // Accept writes a refusal on every error; without one there is nothing to answer
	}
	what := "connect with a WebSocket client"
	switch h.status {
	case http.StatusForbidden:
		what = "open the page from this server's origin or one in Config.AllowedOrigins"
	case http.StatusNotImplemented:
		what = "the server cannot take over this connection: serve the Handler over HTTP/1.1, " +
			"through middleware whose ResponseWriter implements http.Hijacker or Unwrap"
	}
	detail := strings.TrimSpace(strings.ToValidUTF8(string(h.refusal), ""))
	consistency.WriteProblem(h.ResponseWriter, h.status, "", "live: WebSocket handshake refused: "+detail+"; "+what)
}

// hijackingWriter is a handshakeWriter over a connection that can be
// hijacked. It keeps the connection Accept hijacks, so a close the peer
// does not answer can be cut short by closing it.
type hijackingWriter struct{ *handshakeWriter }

// Hijack hijacks the connection under the wrapped ResponseWriter, found
// as http.ResponseController finds it: a middleware's writer need not
// implement http.Hijacker itself when its Unwrap returns one that does.
func (h hijackingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, rw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	h.conn = conn
	return conn, rw, err
}

// canHijack reports whether http.ResponseController can hijack w's
// connection: whether w, or a writer its Unwrap chain leads to, is an
// http.Hijacker. (An HTTP/2 ResponseWriter is not.)
func canHijack(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}
