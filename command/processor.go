package command

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
	"slices"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/rowjson"
)

// DefaultConsumerPrefix starts the feed consumer name of every command
// handler: "command.<handler name>".
const DefaultConsumerPrefix = "command"

// Store is what command handlers run on: a memstore.Store or a
// pgstore.Store.
type Store interface {
	events.Store
	feed.Source
}

// ProcessorConfig configures a Processor. Store and Router are required.
type ProcessorConfig struct {
	// Store holds the commands and the events handlers append.
	Store Store
	// Router runs the handlers, so its middleware (Recoverer, metrics,
	// tracing) applies. A retry middleware (Watermill's middleware.Retry)
	// does not retry a failed handler: its writes are still in the
	// delivery's unit of work, so a second call in that unit runs nothing
	// and returns feed.ErrUnitFailed; the delivery fails, the unit rolls
	// back and the command is delivered again in a new unit (the
	// subscriber's Nack backoff paces it). A handler that panics fails
	// the same way: the processor recovers the panic and returns it as the
	// call's error, wrapping the middleware.RecoveredPanicError a
	// Recoverer would have returned.
	Router *message.Router
	// Subscriber tunes each handler's feed.Subscriber; its ConsumerName is
	// set per handler. Defaults to the feed.SubscriberConfig defaults.
	Subscriber feed.SubscriberConfig
	// ConsumerPrefix names the handlers' feed consumers. Defaults to
	// DefaultConsumerPrefix. It is UTF-8 text without control characters
	// (U+0000 to U+001F, U+007F), '/' or '#', as handler names are: a
	// consumer name holding a control character could never take its
	// lease, and '/' and '#' separate topics and partitions in checkpoint
	// names (feed.CheckpointName), so two consumers could share one.
	ConsumerPrefix string
	// Partitions splits each handler's commands by stream, that is by
	// sender (see StreamFor), into this many partitions, consumers of their
	// own named "<prefix>.<handler>#<i>/<n>", delivered to the handler
	// concurrently: one sender's commands run in order, different senders'
	// in parallel, and commands of two senders for one aggregate meet at
	// its expected version (a conflict decides again). Changing it starts the new consumers at the beginning of
	// the commands' category: the stored results make the commands already
	// handled no-ops, but they are read again. While the old consumers still
	// run (a rolling deploy), a command both read is handled by one of them:
	// the other's unit waits for the first's claim of the command, or
	// conflicts (see the package doc). Defaults to 1 (one consumer per
	// handler).
	Partitions int
	// Logger defaults to a no-op logger.
	Logger watermill.LoggerAdapter
}

// consumerName is the feed consumer of the handler named handler (before
// any partition suffix): what its subscriber and its lag target are named.
func (c *ProcessorConfig) consumerName(handler string) string {
	return c.ConsumerPrefix + "." + handler
}

// newSubscriber makes the feed subscriber of the handler named handler.
func (c *ProcessorConfig) newSubscriber(handler string) (message.Subscriber, error) {
	sc := c.Subscriber
	sc.ConsumerName = c.consumerName(handler)
	if c.Partitions > 1 {
		return newPartitioned(c.Store, sc, c.Partitions)
	}
	return feed.NewSubscriber(c.Store, &sc)
}

// Processor is Watermill's cqrs.CommandProcessor on converge's feed: each
// handler subscribes to its command type's category. A command that does
// not decode into its handler's type is rejected (a Rejected event saying
// why) without reaching the handler. It implements saga.CommandCatalog.
type Processor struct {
	cfg ProcessorConfig
	cp  *cqrs.CommandProcessor

	mu        sync.RWMutex
	handled   map[string]string // command type: its handler's name
	consumers []Consumer
	failed    failedCalls
}

// Consumer is one handler's feed consumer, as a lag monitor watches it.
type Consumer struct {
	// Handler is the handler's HandlerName.
	Handler string
	// Name is the consumer's name: "<prefix>.<handler>".
	Name string
	// Checkpoints are the names it checkpoints under (feed.CheckpointName
	// of Name and its command type's category), one per partition with
	// Partitions above 1. It is as far as the slowest.
	Checkpoints []string
}

// NewProcessor returns a Processor adding handlers to cfg.Router. It
// registers Rejected in the store's registry.
func NewProcessor(cfg *ProcessorConfig) (*Processor, error) {
	if cfg == nil || cfg.Store == nil || cfg.Router == nil {
		return nil, errors.New("command: NewProcessor needs ProcessorConfig.Store (a memstore.Store or pgstore.Store) and ProcessorConfig.Router")
	}
	c := *cfg
	if c.ConsumerPrefix == "" {
		c.ConsumerPrefix = DefaultConsumerPrefix
	}
	if err := validatePrefix(c.ConsumerPrefix); err != nil {
		return nil, err
	}
	if c.Partitions < 0 || c.Partitions > feed.MaxPartitions {
		return nil, fmt.Errorf("command: ProcessorConfig.Partitions is %d: use 0 or 1 for one consumer per handler, or up to %d", c.Partitions, feed.MaxPartitions)
	}
	if c.Subscriber.Partition != (feed.Partition{}) {
		return nil, errors.New("command: ProcessorConfig.Subscriber.Partition is set: use ProcessorConfig.Partitions")
	}
	if c.Subscriber.ConsumerName != "" {
		return nil, errors.New("command: ProcessorConfig.Subscriber.ConsumerName is set: the processor names each handler's consumer; use ConsumerPrefix")
	}
	// AddHandlers makes each handler's subscriber after the handlers
	// before it are on the router, which cannot take them off: a
	// Subscriber no subscriber takes is refused here, with no handler
	// added, so that AddHandlers (once Plan accepts its handlers) cannot
	// fail half-way.
	probe, err := c.newSubscriber("probe")
	if err != nil {
		return nil, fmt.Errorf("command: ProcessorConfig.Subscriber: %w", err)
	}
	_ = probe.Close() // never subscribed: nothing to wait for
	if err := Register(c.Store.Registry()); err != nil {
		return nil, err
	}
	logger := c.Logger
	if logger == nil {
		logger = watermill.NopLogger{}
	}
	p := &Processor{cfg: c, handled: map[string]string{}}
	limits := events.LimitsOf(c.Store)
	m := Marshaler{Registry: c.Store.Registry()}
	cp, err := cqrs.NewCommandProcessorWithConfig(c.Router, cqrs.CommandProcessorConfig{
		GenerateSubscribeTopic: func(params cqrs.CommandProcessorGenerateSubscribeTopicParams) (string, error) {
			if params.CommandName == "" {
				return "", fmt.Errorf("command: handler %s: its command type is not registered in the store's events.Registry", params.CommandHandler.HandlerName())
			}
			return Category(params.CommandName), nil
		},
		SubscriberConstructor: func(params cqrs.CommandProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return c.newSubscriber(params.HandlerName)
		},
		OnHandle: func(params cqrs.CommandProcessorOnHandleParams) error {
			ctx := params.Message.Context()
			// A retry middleware calls again with the same message, in the
			// same unit of work, which still holds the failed call's
			// writes: run nothing, so the delivery fails, its unit rolls
			// back and the command comes again in a new one. Keyed by the
			// unit, not kept in the message's context, which a retry
			// middleware may reset.
			u, _ := events.UnitFromContext(ctx)
			// The event id, not the Watermill UUID: one message published
			// to two streams is two events with one UUID.
			key := failedCall{unit: u, msg: params.Message.Metadata.Get(feed.MetaEventID)}
			if ferr := p.failed.get(key); ferr != nil {
				return fmt.Errorf("%w; the failure: %w", feed.ErrUnitFailed, ferr)
			}
			err := p.handleRecovered(ctx, params, limits, logger)
			if err != nil {
				p.failed.put(key, err)
			}
			return err
		},
		Marshaler: deliveryMarshaler{m},
		Logger:    logger,
	})
	if err != nil {
		return nil, fmt.Errorf("command: %w", err)
	}
	p.cp = cp
	return p, nil
}

// handleRecovered is handle with a panic returned as an error. A panic
// unwound past OnHandle would skip recording the failed call, and a
// Recoverer inside a retry middleware would turn it into an error the
// retry answers with another call in the same unit, on top of the
// panicked call's writes: the command's effects would commit twice.
func (p *Processor) handleRecovered(ctx context.Context, params cqrs.CommandProcessorOnHandleParams, limits events.Limits, logger watermill.LoggerAdapter) (err error) {
	defer func() {
		if r := recover(); r != nil {
			// The Recoverer never sees this panic: wrap what it would have
			// returned (the value and the stack), so code that looks for
			// a RecoveredPanicError in the router's log still finds it.
			err = fmt.Errorf("command: handler %s panicked on command %s; its writes are rolled back and the command is delivered again (fix the handler, or have it return an error): %w",
				params.Handler.HandlerName(), params.Message.Metadata.Get(feed.MetaEventID),
				middleware.RecoveredPanicError{V: r, Stacktrace: string(debug.Stack())})
		}
	}()
	return p.handle(ctx, params, limits, logger)
}

// handle runs the command's handler, or rejects a command that does not
// decode.
func (p *Processor) handle(ctx context.Context, params cqrs.CommandProcessorOnHandleParams, limits events.Limits, logger watermill.LoggerAdapter) error {
	cause := undecodable(params.Message)
	if cause == nil {
		return params.Handler.Handle(ctx, params.Command)
	}
	res, fresh, err := rejectUndecodable(ctx, limits, cause)
	if fresh {
		logger.Info("Command does not decode: rejected", watermill.LogFields{
			"handler": params.Handler.HandlerName(), "command_id": res.CommandID, "reason": res.Rejected,
		})
	}
	return err
}

// AddHandlers adds handlers (Handle, or any cqrs.CommandHandler) to the
// router. Add them before the router runs. A command type has one
// handler, and a handler name is taken once: a handler for a type the
// Processor already handles, or with a name one of its handlers or
// another component of the router has, from this call or an earlier one,
// is refused. So is a handler whose feed consumer,
// "<ConsumerPrefix>.<handler name>", could never take its lease: the name
// must be UTF-8 text without control characters (U+0000 to U+001F,
// U+007F), and each of its checkpoint names (the consumer name with a
// partition and the command category) at most feed.MaxLeaseTextBytes
// bytes. A refused call adds nothing. Plan checks handlers the same way
// without adding them.
func (p *Processor) AddHandlers(handlers ...cqrs.CommandHandler) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	consumers, err := p.plan(handlers)
	if err != nil {
		return err
	}
	m := Marshaler{Registry: p.cfg.Store.Registry()}
	// One at a time, so that a handler cqrs has added is recorded even
	// when a later one fails. Once plan accepts the handlers, nothing
	// here fails: NewProcessor made a subscriber of the same
	// configuration, and the names are free.
	for i, h := range handlers {
		if err := p.addHandler(h); err != nil {
			return fmt.Errorf("command: %w", err)
		}
		p.handled[m.Name(h.NewCommand())] = h.HandlerName()
		p.consumers = append(p.consumers, consumers[i])
	}
	return nil
}

// Plan checks handlers as AddHandlers would, against the handlers added
// so far and the router's, and returns the feed consumers they would
// have, in order, adding nothing. Checked before anything else goes on
// the router, which cannot take a handler off, an AddHandlers of the
// same handlers onto the router unchanged cannot be refused. It lets a
// caller name the consumers (to watch their lag, or check them against
// other names) and refuse a configuration before mounting any of it.
func (p *Processor) Plan(handlers ...cqrs.CommandHandler) ([]Consumer, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.plan(handlers)
}

// plan is Plan with p.mu held.
func (p *Processor) plan(handlers []cqrs.CommandHandler) ([]Consumer, error) {
	m := Marshaler{Registry: p.cfg.Store.Registry()}
	adding := map[string]string{}
	// The router refuses a handler name twice, with a panic, and cqrs
	// fails on a handler whose command is no pointer, each once the
	// handlers before it in the call are added: checked here, a refused
	// call adds nothing.
	names := map[string]bool{}
	for n := range p.cfg.Router.Handlers() {
		names[n] = true
	}
	consumers := make([]Consumer, 0, len(handlers))
	for _, h := range handlers {
		if h == nil {
			return nil, errors.New("command: a handler is nil")
		}
		if names[h.HandlerName()] {
			return nil, fmt.Errorf("command: handler name %q is taken, by a handler on the router or another of this call; a router takes a handler name once (give one another name)", h.HandlerName())
		}
		names[h.HandlerName()] = true
		cmd := h.NewCommand()
		if rv := reflect.ValueOf(cmd); rv.Kind() != reflect.Pointer || rv.IsNil() {
			return nil, fmt.Errorf("command: handler %s: NewCommand returns %T; it must return a new non-nil pointer to the command (cqrs.NewCommandHandler does)", h.HandlerName(), cmd)
		}
		name := m.Name(cmd)
		switch {
		case name == "":
			return nil, fmt.Errorf("command: handler %s: its command type is not registered in the store's events.Registry", h.HandlerName())
		case len(name) > MaxTypeNameLength:
			return nil, fmt.Errorf("command: handler %s: command type %q is %d bytes; command streams allow type names of at most %d (register the type under a shorter name)",
				h.HandlerName(), name, len(name), MaxTypeNameLength)
		}
		// Results are kept by command id alone, so of two handlers of one
		// type, whichever ran second would find the first's result and
		// report it without acting: its effects would be lost.
		other, ok := p.handled[name]
		if !ok {
			other, ok = adding[name]
		}
		if ok {
			return nil, fmt.Errorf("command: handlers %q and %q both handle command type %q; a command type has one handler (merge them, or give the second its own command type)",
				other, h.HandlerName(), name)
		}
		adding[name] = h.HandlerName()
		con := Consumer{Handler: h.HandlerName(), Name: p.cfg.consumerName(h.HandlerName())}
		con.Checkpoints = p.cfg.checkpointNames(con.Name, name)
		if strings.ContainsAny(h.HandlerName(), "/#") {
			return nil, fmt.Errorf("command: handler %q: its name holds '/' or '#', which separate topics and partitions in checkpoint names, so its consumer's checkpoint could be another consumer's; rename it with '.' or '-' in their place",
				rowjson.Clip(h.HandlerName(), 64))
		}
		if err := validateConsumer(con.Checkpoints); err != nil {
			return nil, fmt.Errorf("command: handler %q: its feed consumer could never take its lease: %w ("+validNames+")",
				rowjson.Clip(h.HandlerName(), 64), err, feed.MaxLeaseTextBytes)
		}
		consumers = append(consumers, con)
	}
	return consumers, nil
}

// addHandler adds h through cqrs, turning the router's panic (a handler
// name another component of the router took) into an error.
func (p *Processor) addHandler(h cqrs.CommandHandler) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("add handler %s: %v", h.HandlerName(), r)
		}
	}()
	return p.cp.AddHandlers(h)
}

// Consumers returns the feed consumers of the handlers added so far, in
// the order they were added. A handler whose commands keep failing stops
// its consumer, and only a lag monitor watching these sees it.
func (p *Processor) Consumers() []Consumer {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return slices.Clone(p.consumers)
}

// Handles reports whether a handler for the stored command type was added.
func (p *Processor) Handles(commandType string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	_, ok := p.handled[commandType]
	return ok
}
