package live

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/converge-es/converge/events"
)

// client is one WebSocket connection. Its handler goroutine writes; a
// reader goroutine reads the socket and hands the requests it reads to a
// worker goroutine, which handles them one at a time (subscriptions,
// snapshots, replies); a pinger goroutine notices dead peers.
//
// The reader does nothing but read, so that the pongs to the pinger's
// pings are taken in (the WebSocket library handles control frames only
// inside a Read) while the worker waits for a snapshot or for room for a
// reply.
type client struct {
	hub    *Hub
	remote string
	conn   *websocket.Conn // set once, after the upgrade
	// raw is the hijacked connection under conn, set with it: closing it
	// ends a close handshake the peer does not answer.
	raw net.Conn

	// send is the queue the writer drains. It holds a published update
	// only with a token in updateSlots and a reply only with one in
	// replySlots, so it has room whenever a token was had, and the Hub never
	// blocks on it.
	send chan outgoing
	// updateSlots holds SendBuffer tokens. Publish takes one without
	// waiting: a client with no token left does not read what it
	// subscribed to, and is dropped.
	updateSlots chan struct{}
	// replySlots bounds the replies to the client's own requests. The
	// worker waits for a token before queuing one, with hub.mu not held, so
	// a client that sends requests faster than it reads is slowed, not
	// dropped, and its replies never take room its updates need.
	replySlots chan struct{}

	// requests carries what the reader read to the worker, in order. It
	// holds MaxSubscriptionsPerClient requests, so that a page resubscribing
	// to all its entities at once is read in full while the worker loads
	// the snapshots; a client that sends more than that ahead of the
	// worker is slowed: the reader waits for room before it reads on.
	requests chan request
	// holds counts the reader's waits for room in requests, twice each:
	// it is odd while the reader waits, not reading the socket, so a pong
	// may go untaken meanwhile.
	holds atomic.Uint64

	// subs and gone are guarded by hub.mu. gone is set when the client is
	// removed from the Hub, after which nothing is queued for it.
	subs map[string]*subscription
	gone bool

	// ctx is cancelled when the connection is done with; cancelling it
	// aborts a pending read or write, which closes the connection.
	ctx    context.Context
	cancel context.CancelFunc

	// done is closed by stop, once, with the close status to send.
	stopOnce    sync.Once
	done        chan struct{}
	closeCode   websocket.StatusCode // 0: close without a handshake
	closeReason string
}

// subscription is one client's interest in one entity. It is pending while
// its snapshot is being read; updates published meanwhile are buffered.
type subscription struct {
	pending  bool
	buffered []pendingUpdate
	// covered is the snapshot's position while no later update has been
	// sent: a Publish of a row the snapshot read, made once the
	// subscription is live, must not send that row a second time.
	covered *events.Token
}

type pendingUpdate struct {
	msg []byte
	pos events.Token
}

// request is one message of the client, read and checked by the reader: a
// subscribe or unsubscribe of entity, or, when refusal is set, a bad
// request to answer with that error.
type request struct {
	subscribe bool
	entity    string
	refusal   string
}

// outgoing is one queued message; reply tells which tokens it holds.
type outgoing struct {
	msg   []byte
	reply bool
}

// newClient returns a client with room for replyRoom replies besides its
// SendBuffer updates.
func newClient(h *Hub, remote string, replyRoom int) *client {
	ctx, cancel := context.WithCancel(h.baseCtx)
	return &client{
		hub:         h,
		remote:      remote,
		send:        make(chan outgoing, h.cfg.SendBuffer+replyRoom),
		updateSlots: make(chan struct{}, h.cfg.SendBuffer),
		replySlots:  make(chan struct{}, replyRoom),
		requests:    make(chan request, h.cfg.MaxSubscriptionsPerClient),
		subs:        make(map[string]*subscription),
		ctx:         ctx,
		cancel:      cancel,
		done:        make(chan struct{}),
	}
}

// reserveReply waits until a reply can be queued, and reports false when
// the connection ends first. Only the worker calls it, never with hub.mu
// held: the writer frees room without the lock, so waiting cannot stall
// the Hub, and the writer gives up within WriteTimeout when the peer stops
// reading, which ends the wait through done.
func (c *client) reserveReply() bool {
	select {
	case c.replySlots <- struct{}{}:
		return true
	case <-c.done:
		return false
	case <-c.ctx.Done():
		return false
	}
}

// bufferedLocked counts the updates buffered for the client's
// subscriptions waiting for their snapshots: together they are held to
// SendBuffer, as its queue is. The caller holds hub.mu.
func (c *client) bufferedLocked() int {
	n := 0
	for _, s := range c.subs {
		n += len(s.buffered)
	}
	return n
}

// stop asks the writer to close the connection with code and reason (code
// 0: at once, without a close handshake, for a peer that is gone). The
// first call wins.
func (c *client) stop(code websocket.StatusCode, reason string) {
	c.stopOnce.Do(func() {
		c.closeCode, c.closeReason = code, reason
		close(c.done)
	})
}

// run serves the connection until it ends, then removes the client from
// the Hub and waits for the client's goroutines.
func (c *client) run(snapshots []string) {
	var wg sync.WaitGroup
	wg.Go(c.readLoop)
	wg.Go(func() { c.work(snapshots) })
	wg.Go(c.pingLoop)
	c.writeLoop()

	c.hub.remove(c)
	c.close()
	c.cancel()
	wg.Wait()
}

// writeLoop sends queued messages until stop is called.
func (c *client) writeLoop() {
	for {
		// A stopped client gets nothing more, even with messages queued.
		select {
		case <-c.done:
			return
		default:
		}
		select {
		case <-c.done:
			return
		case out := <-c.send:
			if out.reply {
				<-c.replySlots
			} else {
				<-c.updateSlots
			}
			ctx, cancel := context.WithTimeout(c.ctx, c.hub.cfg.WriteTimeout)
			err := c.conn.Write(ctx, websocket.MessageText, out.msg)
			cancel()
			if err != nil {
				c.hub.cfg.Logger.Debug("live: write failed; disconnecting", "remote", c.remote, "error", err)
				c.stop(0, "")
				return
			}
		}
	}
}

// close ends the connection as stop asked.
func (c *client) close() {
	if c.closeCode == 0 {
		_ = c.conn.CloseNow()
		return
	}
	// The handshake waits for the peer's answer, reading under the
	// library's own five-second timeout. Cancelling ctx aborts only a Read
	// of the reader's (which may be waiting for room for a request, or not
	// started yet), so closing the connection under it is what holds us
	// for WriteTimeout at most whatever the reader is doing.
	t := time.AfterFunc(c.hub.cfg.WriteTimeout, func() {
		c.cancel()
		if c.raw != nil {
			_ = c.raw.Close()
		}
	})
	defer t.Stop()
	_ = c.conn.Close(c.closeCode, c.closeReason)
}

// readLoop reads requests and hands them to the worker, in order, until
// the connection fails or closes. It only ever waits for the socket, or
// for room in requests (which slows a client that sends requests faster
// than they are handled).
func (c *client) readLoop() {
	defer c.stop(0, "")
	for {
		typ, b, err := c.conn.Read(c.ctx)
		if err != nil {
			c.logReadError(err)
			return
		}
		req := request{refusal: `binary messages are not supported: send JSON text like {"action":"subscribe","entity":"order-1"}`}
		if typ == websocket.MessageText {
			req = parseRequest(b)
		}
		if !c.handOver(req) {
			return
		}
	}
}

// handOver queues req for the worker, waiting for room when the worker is
// MaxSubscriptionsPerClient requests behind, and reports false when the
// connection ends first.
func (c *client) handOver(req request) bool {
	select {
	case c.requests <- req:
		return true
	default:
	}
	c.holds.Add(1)
	defer c.holds.Add(1)
	select {
	case c.requests <- req:
		return true
	case <-c.done:
		return false
	case <-c.ctx.Done():
		return false
	}
}

// work reads the snapshots of the URL's subscriptions, then handles the
// requests the reader hands over, one at a time and in order, until the
// client is stopped. Handling them in one goroutine keeps the replies in
// the order of the requests, and each subscription's acknowledgement
// before its snapshot and its updates (see Hub.subscribe).
func (c *client) work(snapshots []string) {
	if c.hub.cfg.Snapshot != nil {
		for _, e := range snapshots {
			if c.stopped() {
				return
			}
			c.hub.mu.Lock()
			s := c.subs[e]
			c.hub.mu.Unlock()
			if s != nil && s.pending {
				c.hub.loadSnapshot(c, e, s)
			}
		}
	}
	for {
		if c.stopped() { // a stopped client's requests are not handled
			return
		}
		select {
		case <-c.done:
			return
		case <-c.ctx.Done():
			return
		case req := <-c.requests:
			c.handle(req)
		}
	}
}

// stopped reports whether stop has been called.
func (c *client) stopped() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

func (c *client) logReadError(err error) {
	switch {
	case c.ctx.Err() != nil:
	case errors.Is(err, websocket.ErrMessageTooBig):
		c.hub.cfg.Logger.Info("live: client sent an oversized message; closed", "remote", c.remote, "limit", MaxClientMessageSize)
	case websocket.CloseStatus(err) != -1:
	default:
		c.hub.cfg.Logger.Debug("live: read failed; disconnecting", "remote", c.remote, "error", err)
	}
}

// parseRequest reads one text message of the client. A bad request is
// returned with the refusal it is answered with; the connection stays
// open.
func parseRequest(b []byte) request {
	var req Request
	if err := json.Unmarshal(b, &req); err != nil {
		return request{refusal: fmt.Sprintf(`malformed request (%v): send a JSON object like {"action":"subscribe","entity":"order-1"}`, err)}
	}
	switch req.Action {
	case ActionSubscribe, ActionUnsubscribe:
	case "":
		return request{refusal: `missing action: send {"action":"subscribe","entity":"order-1"} or "unsubscribe"`}
	default:
		return request{refusal: fmt.Sprintf(`unknown action %.32q: use "subscribe" or "unsubscribe"`, req.Action)}
	}
	if err := validateEntityID(req.Entity); err != nil {
		return request{refusal: err.Error()}
	}
	return request{subscribe: req.Action == ActionSubscribe, entity: req.Entity}
}

// handle answers one request.
func (c *client) handle(req request) {
	switch {
	case req.refusal != "":
		c.replyError("", req.refusal)
	case req.subscribe:
		c.hub.subscribe(c, req.entity)
	default:
		c.hub.unsubscribe(c, req.entity)
	}
}

func (c *client) replyError(entity, text string) {
	if !c.reserveReply() {
		return
	}
	c.hub.mu.Lock()
	defer c.hub.mu.Unlock()
	c.hub.replyLocked(c, errorMessage(entity, text))
}

// pingLoop pings the peer every PingInterval and stops the client when a
// pong does not come back within WriteTimeout.
//
// A ping the reader was not reading during, because it waited for room
// for a request, proves nothing: its pong may be waiting behind the
// requests. Such a failure is let pass, and the next ping decides. The
// wait ends as the worker moves on, within SnapshotTimeout or, when it
// waits for room for a reply, within WriteTimeout (a write that times
// out stops the client), after which the reader reads again.
func (c *client) pingLoop() {
	t := time.NewTicker(c.hub.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			holds := c.holds.Load()
			ctx, cancel := context.WithTimeout(c.ctx, c.hub.cfg.WriteTimeout)
			err := c.conn.Ping(ctx)
			cancel()
			if err != nil && c.ctx.Err() == nil && (holds%2 == 1 || c.holds.Load() != holds) {
				c.hub.cfg.Logger.Debug("live: no pong while the client's requests were held back; pinging again", "remote", c.remote, "error", err)
				continue
			}
			if err != nil {
				if c.ctx.Err() == nil {
					c.hub.cfg.Logger.Debug("live: ping failed; disconnecting", "remote", c.remote, "error", err)
				}
				c.stop(0, "")
				return
			}
		}
	}
}
