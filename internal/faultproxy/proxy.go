package faultproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
)

// Fault is one injected failure. It fires once, on the first chunk a
// client sends that Match accepts.
type Fault struct {
	// Match picks the request to fail by the bytes the client sent.
	Match func(clientBytes []byte) bool
	// DropRequest cuts the connection instead of forwarding the request:
	// the server never sees it. When false, the request reaches the server
	// and its answer is withheld: the connection is cut when the answer
	// arrives.
	DropRequest bool
	// Hold, when not nil, delays the cut until it is closed: the client
	// sees neither an answer nor an error meanwhile (as with a server that
	// stopped answering), so a test can cancel the client's context then.
	Hold <-chan struct{}
}

// Contains returns a Match for chunks holding s.
func Contains(s string) func([]byte) bool {
	b := []byte(s)
	return func(chunk []byte) bool { return bytes.Contains(chunk, b) }
}

// Proxy forwards every connection it accepts to a target address.
type Proxy struct {
	tb     testing.TB
	ln     net.Listener
	target string

	mu     sync.Mutex
	faults []*armed
	links  map[*link]struct{}
	closed bool
	wg     sync.WaitGroup
}

type armed struct {
	Fault
	fired chan struct{}
}

// New starts a proxy on a free port of 127.0.0.1 forwarding to target. It
// is closed when the test ends.
func New(tb testing.TB, target string) *Proxy {
	tb.Helper()
	ln, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("faultproxy: listen: %v", err)
	}
	p := &Proxy{tb: tb, ln: ln, target: target, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	tb.Cleanup(p.Close)
	return p
}

// Addr returns the host:port clients connect to.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Host returns the proxy's host, for client configs that take Addr apart.
func (p *Proxy) Host() string { return p.addr().IP.String() }

// Port returns the proxy's port.
func (p *Proxy) Port() uint16 { return uint16(p.addr().Port) } //nolint:gosec // a TCP port fits in 16 bits

func (p *Proxy) addr() *net.TCPAddr {
	a, ok := p.ln.Addr().(*net.TCPAddr)
	if !ok {
		p.tb.Fatalf("faultproxy: listening on %T, not TCP", p.ln.Addr())
	}
	return a
}

// Inject arms f and returns a channel closed when it fires: when the
// request was dropped, or when the server's answer arrived and was
// withheld.
func (p *Proxy) Inject(f Fault) <-chan struct{} {
	a := &armed{Fault: f, fired: make(chan struct{})}
	p.mu.Lock()
	p.faults = append(p.faults, a)
	p.mu.Unlock()
	return a.fired
}

// CutAll closes every open connection, as a server restart would.
func (p *Proxy) CutAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for l := range p.links {
		l.cut()
	}
}

// Close stops accepting, cuts every connection and waits for the proxy's
// goroutines.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	_ = p.ln.Close()
	p.CutAll()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		server, err := (&net.Dialer{}).DialContext(context.Background(), "tcp", p.target)
		if err != nil {
			_ = client.Close()
			continue
		}
		l := &link{p: p, client: client, server: server, done: make(chan struct{})}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			l.cut()
			return
		}
		p.links[l] = struct{}{}
		p.wg.Add(2)
		p.mu.Unlock()
		go l.clientToServer()
		go l.serverToClient()
	}
}

// take removes and returns the first armed fault matching chunk.
func (p *Proxy) take(chunk []byte) *armed {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, a := range p.faults {
		if a.Match(chunk) {
			p.faults = append(p.faults[:i], p.faults[i+1:]...)
			return a
		}
	}
	return nil
}

// link is one proxied connection.
type link struct {
	p              *Proxy
	client, server net.Conn

	mu      sync.Mutex
	pending *armed // a request went through whose answer is to be withheld
	once    sync.Once
	done    chan struct{}
}

func (l *link) cut() {
	l.once.Do(func() {
		close(l.done)
		_ = l.client.Close()
		_ = l.server.Close()
	})
}

func (l *link) finish() {
	l.cut()
	l.p.mu.Lock()
	delete(l.p.links, l)
	l.p.mu.Unlock()
	l.p.wg.Done()
}

func (l *link) clientToServer() {
	defer l.finish()
	buf := make([]byte, 64<<10)
	for {
		n, err := l.client.Read(buf)
		if n > 0 {
			if a := l.p.take(buf[:n]); a != nil {
				if a.DropRequest {
					close(a.fired)
					l.hold(a)
					return
				}
				// Armed before forwarding, so the answer cannot overtake it.
				l.mu.Lock()
				l.pending = a
				l.mu.Unlock()
			}
			if _, werr := l.server.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (l *link) serverToClient() {
	defer l.finish()
	buf := make([]byte, 64<<10)
	for {
		n, err := l.server.Read(buf)
		if n > 0 {
			l.mu.Lock()
			a := l.pending
			l.mu.Unlock()
			if a != nil {
				close(a.fired)
				l.hold(a)
				return
			}
			if _, werr := l.client.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				l.p.tb.Logf("faultproxy: read from server: %v", err)
			}
			return
		}
	}
}

// hold waits for a's Hold (or the link's end) before the cut.
func (l *link) hold(a *armed) {
	if a.Hold == nil {
		return
	}
	select {
	case <-a.Hold:
	case <-l.done:
	}
}
