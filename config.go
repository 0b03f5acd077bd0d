package converge

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// Defaults of Config.
const (
	// DefaultSagaProcessor names the feed processor that runs the sagas:
	// its partitions' checkpoints, leases and membership are stored under
	// it, and the Tracker knows the lowest of them by this name.
	DefaultSagaProcessor = "converge.sagas"
	// DefaultSagaPartitions splits saga consumption by correlation id, so
	// a slow or parked instance holds up only its own partition and the
	// live processes share the work.
	DefaultSagaPartitions = 8
	// DefaultCommitBatch is how many already-read events a consumer that
	// is behind applies in one unit (see Config.CommitBatch).
	DefaultCommitBatch = 100
	// DefaultCloseTimeout bounds how long Stop waits for handlers in
	// flight when the client creates the router.
	DefaultCloseTimeout = 30 * time.Second
	// DefaultLagInterval is how often the lag monitor samples.
	DefaultLagInterval = time.Second
	// SagaLagSLA is the lag monitor's SLA for the saga processor: steps
	// take their commands' round trips, so it is held to the analytics
	// bound, not the user-facing one; a halted partition breaches it.
	SagaLagSLA = lag.AnalyticsSLA
	// CommandLagSLA is the lag monitor's SLA for each command handler's
	// consumer: a command it cannot handle is retried and holds back the
	// ones behind it, and this bound says when that is a breach.
	CommandLagSLA = lag.AnalyticsSLA
)

// Config configures a Client. Every field is optional; an empty Config
// runs only the Tracker (and a router with no handlers): the lag monitor
// watches the projections, the saga processor and the command handlers,
// so there is none without any of them.
type Config struct {
	// Projections are the read models to run (projections.New). Defaults
	// to none.
	Projections []*projections.Projection
	// Sagas are the saga types to run (saga.New). Defaults to none.
	Sagas []saga.Definition
	// Commands are the command handlers to run (command.Handle, or any
	// cqrs.CommandHandler). Defaults to none.
	//
	// With any set, the sagas' steps may send only the command types
	// handled here: a step sending another fails its instance
	// (saga.ErrNoCommandHandler), so a command no one will read is never
	// left behind. Leave it empty in a process whose sagas' commands are
	// handled by other processes: the engine then checks nothing.
	Commands []cqrs.CommandHandler

	// Router is the Watermill router the sagas and command handlers are
	// mounted on, so its middleware (Recoverer, metrics, tracing)
	// applies. A retry middleware does not retry a failed handler within
	// its delivery: that call's writes are still in the delivery's unit
	// of work, so the next call in it runs nothing and returns
	// feed.ErrUnitFailed, and the delivery is retried in a new unit. The client runs it in Start and closes it in Stop: do not
	// run it yourself. A NewClient that returns an error adds no handler
	// to it, so the fixed configuration can be built on it. Defaults to a
	// new router with middleware.Recoverer and CloseTimeout
	// DefaultCloseTimeout.
	Router *message.Router
	// ProjectionMiddleware is added to the projections' handlers after
	// middleware.Recoverer (projections.RunnerConfig.Middleware). It runs
	// before an event's unit of work begins, so it may delay an event
	// without holding the feed back. Defaults to none.
	ProjectionMiddleware []message.HandlerMiddleware
	// OnProjectionUpdate is called after each committed read-model change
	// (projections.RunnerConfig.OnUpdate); it must not block. Defaults to
	// nil.
	OnProjectionUpdate func(projections.Update)

	// SagaProcessor names the processor that runs the sagas. Defaults to
	// DefaultSagaProcessor.
	SagaProcessor string
	// SagaPartitions is how many partitions saga consumption is split
	// into (by correlation id). Changing it carries the position over,
	// each message still handled once (feed.ProcessorConfig.Partitions),
	// and processes of the old and the new count may overlap during a
	// rolling deploy: a saga step records the message it handled, so a
	// second delivery changes nothing. During the overlap some events wait:
	// all the processes share one membership group, so an event whose
	// old-count partition falls to a new process and whose new-count
	// partition falls to an old one is delivered by neither until the old
	// processes stop. Keep the overlap short. Defaults to
	// DefaultSagaPartitions (8).
	SagaPartitions int
	// SagaRetention is how long an ended saga instance keeps its history
	// and dedupe records before they are purged, leaving a tombstone that
	// still recognises late messages (saga.EngineConfig.Retention).
	// Defaults to saga.DefaultRetention; negative keeps everything.
	SagaRetention time.Duration
	// GateTimeout bounds how long a saga step waits for the read models it
	// reads before it is parked. Defaults to feed.DefaultGateTimeout.
	GateTimeout time.Duration
	// CommitBatch is at most how many already-read events the projections,
	// the saga processor and each command handler apply in one unit of
	// work (one transaction and checkpoint write on PostgreSQL). Batching
	// is adaptive: a consumer that keeps up commits each event at once, one
	// that is behind fills units up to this bound. A failing event is
	// retried, counted and halted on by itself (feed.SubscriberConfig.
	// CommitBatch says how). Set 1 to commit every event alone. Defaults to
	// DefaultCommitBatch (100).
	CommitBatch int
	// Subscriber tunes the feed subscribers of the sagas and the command
	// handlers (lease TTL, poll intervals, backoffs). Its ConsumerName,
	// CommitBatch, OnCommitted and Partition are set by the client: a
	// value there is an error. Its LeaseTTL is also how old the heartbeat
	// of a consumer with events to apply may grow before the lag monitor
	// calls it stalled (at least lag.DefaultStaleHeartbeat): a holder beats
	// its heart when it renews, every third of the TTL. Its Logger defaults to Logger; the rest to the
	// feed.SubscriberConfig defaults.
	Subscriber feed.SubscriberConfig

	// LagSLA is the lag monitor's SLA for read models that declare none
	// (strong ones). Defaults to lag.DefaultSLA.
	LagSLA time.Duration
	// LagInterval is how often the lag monitor samples. Defaults to
	// DefaultLagInterval (1s); below lag.MinInterval (10ms) NewClient
	// refuses it.
	LagInterval time.Duration

	// Registerer receives the saga and lag metrics. Defaults to nil:
	// metrics are kept (Client.Sagas().Metrics()) but not registered.
	Registerer prometheus.Registerer
	// Clock is the time source of the sagas (timers), the projections and
	// the lag monitor. Defaults to events.SystemClock.
	Clock events.Clock
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

func (c *Config) withDefaults() Config {
	var out Config
	if c != nil {
		out = *c
	}
	out.SagaProcessor = cmp.Or(out.SagaProcessor, DefaultSagaProcessor)
	out.SagaPartitions = cmp.Or(out.SagaPartitions, DefaultSagaPartitions)
	out.GateTimeout = cmp.Or(out.GateTimeout, feed.DefaultGateTimeout)
	out.LagInterval = cmp.Or(out.LagInterval, DefaultLagInterval)
	out.CommitBatch = cmp.Or(out.CommitBatch, DefaultCommitBatch)
	if out.Clock == nil {
		out.Clock = events.SystemClock{}
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.Subscriber.Logger == nil {
		out.Subscriber.Logger = out.Logger
	}
	return out
}

func (c *Config) validate() error {
	switch {
	case strings.TrimSpace(c.SagaProcessor) == "":
		return errors.New("converge: Config.SagaProcessor is blank: leave it empty for the default or name the processor")
	case c.SagaPartitions < 1 || c.SagaPartitions > feed.MaxPartitions:
		return fmt.Errorf("converge: Config.SagaPartitions is %d: use 0 for the default (%d) or 1..%d", c.SagaPartitions, DefaultSagaPartitions, feed.MaxPartitions)
	case c.CommitBatch < 1:
		return fmt.Errorf("converge: Config.CommitBatch is %d: use 0 for the default (%d) or a positive count", c.CommitBatch, DefaultCommitBatch)
	case c.SagaRetention > 0 && c.SagaRetention < saga.MinRetention:
		return fmt.Errorf("converge: Config.SagaRetention is %s: use 0 for the default (%s), a negative value to keep everything, or at least %s",
			c.SagaRetention, saga.DefaultRetention, saga.MinRetention)
	case c.GateTimeout < 0:
		return fmt.Errorf("converge: Config.GateTimeout is %s: use 0 for the default or a positive duration", c.GateTimeout)
	case c.LagSLA < 0, c.LagInterval < 0:
		return errors.New("converge: Config.LagSLA and LagInterval must not be negative (use 0 for the defaults)")
	case c.LagInterval > 0 && c.LagInterval < lag.MinInterval:
		return fmt.Errorf("converge: Config.LagInterval is %s: use 0 for the default (%s) or at least %s", c.LagInterval, DefaultLagInterval, lag.MinInterval)
	case c.Router != nil && c.Router.IsRunning():
		return errors.New("converge: Config.Router is already running: the client adds its handlers and runs it in Start; pass a router that is not running")
	case c.Subscriber.ConsumerName != "":
		return errors.New("converge: Config.Subscriber.ConsumerName is set: the client names every consumer; leave it empty")
	case c.Subscriber.CommitBatch != 0:
		return errors.New("converge: Config.Subscriber.CommitBatch is set: the client sets it per consumer; leave it empty")
	case c.Subscriber.OnCommitted != nil:
		return errors.New("converge: Config.Subscriber.OnCommitted is set: the client sets it; leave it nil")
	case c.Subscriber.Partition != feed.Partition{}:
		return errors.New("converge: Config.Subscriber.Partition is set: the client partitions its consumers itself " +
			"(Config.SagaPartitions for the sagas); leave it empty")
	}
	// Checked once here, under the name the caller set, rather than by
	// each consumer built from it (whose errors name their own configs).
	probe := c.Subscriber
	probe.ConsumerName = "converge"
	if err := probe.Validate(); err != nil {
		return fmt.Errorf("converge: Config.Subscriber: %w", err)
	}
	if err := feed.ValidateConsumerNames(c.SagaProcessor); err != nil {
		return fmt.Errorf("converge: Config.SagaProcessor: %w", err)
	}
	for i, p := range c.Projections {
		if p == nil {
			return fmt.Errorf("converge: Config.Projections[%d] is nil", i)
		}
	}
	for i, s := range c.Sagas {
		if s == nil {
			return fmt.Errorf("converge: Config.Sagas[%d] is nil", i)
		}
	}
	for i, h := range c.Commands {
		if h == nil {
			return fmt.Errorf("converge: Config.Commands[%d] is nil", i)
		}
	}
	if len(c.Sagas) > 0 {
		// The saga processor's lag target and Tracker entry are named
		// SagaProcessor, a projection's its name: one name cannot be both.
		for i, p := range c.Projections {
			if p.ReadModel().Name == c.SagaProcessor {
				return fmt.Errorf("converge: Config.SagaProcessor %q is the name of projection Config.Projections[%d]; the saga processor and the read models are watched, and waited on, by name: rename one",
					c.SagaProcessor, i)
			}
		}
	}
	return nil
}

// checkConsumerNames refuses a command handler's feed consumer (its lag
// target's name) named like the saga processor or a projection: the lag
// monitor would refuse the name twice, in a list the caller never wrote.
func (c *Config) checkConsumerNames(consumers []command.Consumer) error {
	for i, con := range consumers {
		if len(c.Sagas) > 0 && con.Name == c.SagaProcessor {
			return fmt.Errorf("converge: Config.SagaProcessor %q is the name of command handler %q's feed consumer (Config.Commands[%d]); the saga processor and the command handlers' consumers are watched by name: rename one",
				c.SagaProcessor, con.Handler, i)
		}
		for j, p := range c.Projections {
			if p.ReadModel().Name == con.Name {
				return fmt.Errorf("converge: projection Config.Projections[%d] %q is the name of command handler %q's feed consumer (Config.Commands[%d]); the read models and the command handlers' consumers are watched by name: rename one",
					j, con.Name, con.Handler, i)
			}
		}
	}
	return nil
}

// checkSagaHandlerNames refuses a saga processor whose router handlers
// (one per partition, named as feed.Processor.AddHandlers names them)
// would take a name a command handler or a handler of taken (the
// router's, before the client adds any) has: the router would refuse it
// once the other handlers were on it, and cannot take them off.
func (c *Config) checkSagaHandlerNames(taken map[string]message.HandlerFunc) error {
	commands := make(map[string]int, len(c.Commands))
	for i, h := range c.Commands {
		commands[h.HandlerName()] = i
	}
	for i := range c.SagaPartitions {
		name := feed.PartitionName(c.SagaProcessor, i, c.SagaPartitions)
		whose := "its router handler"
		if c.SagaPartitions > 1 {
			whose = fmt.Sprintf("its router handler for partition %d of %d", i, c.SagaPartitions)
		}
		if j, ok := commands[name]; ok {
			return fmt.Errorf("converge: Config.SagaProcessor %q: %s is named %q, as command handler Config.Commands[%d] is; a router takes a handler name once: rename one",
				c.SagaProcessor, whose, name, j)
		}
		if _, ok := taken[name]; ok {
			return fmt.Errorf("converge: Config.SagaProcessor %q: %s is named %q, as a handler already on Config.Router is; a router takes a handler name once: rename one",
				c.SagaProcessor, whose, name)
		}
	}
	return nil
}
