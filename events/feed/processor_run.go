package feed

import (
	"context"
	"sync"

	"github.com/converge-es/converge/events"
)

// Run delivers the processor's partitions straight to its handler, without
// a Watermill router, until ctx ends or Close is called. Everything else is
// as on a router: leases, membership, units, the gate, retries, halts and
// dead letters; a handler's error is a Nack and a panic is an error.
//
// What it saves is the router's cost per event (a message with its
// metadata, a goroutine and two channel hand-offs), which is most of the
// cost of a cheap handler. Use it for bulk work such as a projection's
// rebuild; mount the processor on a router (AddHandlers) when router
// middleware (tracing, metrics, throttling) should see each event. Run
// and AddHandlers are exclusive, and Run runs once: a second call fails.
// When Run returns, the processor has left its membership group, as after
// Close, so the other processes take over its partitions at once. Run
// returns once every partition's handler has returned, so a handler that
// ignores its context's end holds Run (on a router, the consumer gives up
// on it after LeaseTTL and rolls its unit back).
func (p *Processor) Run(ctx context.Context) error {
	if !p.mode.CompareAndSwap(modeUnset, modeRun) {
		return errMode
	}
	if err := p.startMembership(); err != nil {
		_ = p.Close()
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(p.mctx, cancel)
	defer stop()
	var wg sync.WaitGroup
	for _, ps := range p.parts {
		c := p.newConsumer(ps)
		c.direct = func(ctx context.Context, env events.Envelope) error { return p.handle(ctx, ps, env) }
		wg.Go(func() { c.run(cctx) })
	}
	wg.Wait()
	p.seedMu.Lock()
	refused := p.refused
	p.seedMu.Unlock()
	if refused != nil {
		_ = p.Close()
		return refused
	}
	// Run runs once, so the processor is done: leave the membership group
	// (as Close does), or the other processes would keep this one's share
	// of the partitions assigned to it, delivered by nobody, until its
	// heartbeat expired or someone called Close.
	_ = p.Close()
	return context.Cause(ctx)
}
