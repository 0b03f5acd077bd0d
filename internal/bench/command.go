package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wsql "github.com/ThreeDotsLabs/watermill-sql/v4/pkg/sql"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
)

// CommandConfig configures the command scenario.
type CommandConfig struct {
	// Rate is how many steps per second send a command. Defaults to 200:
	// low enough that the figures are the transport's, not a queue's.
	Rate int
	// Duration is how long each method sends. Defaults to 5s, so both
	// methods finish within 30s. An unmeasured warm-up of a fifth of it
	// runs before each.
	Duration time.Duration
}

// CommandResult is one JSON line of the command scenario.
type CommandResult struct {
	Scenario string `json:"scenario"`
	// Method is MethodCommandFeed or MethodWatermillSQL.
	Method string `json:"method"`
	// Rate is the step rate asked for (--rate).
	Rate int `json:"rate"`
	// StepsPerSec is the rate the measured steps' appends reached, from
	// the first's commit to the last's. Below Rate, the method was
	// measured at a lower load than asked (the summary says so below 90%).
	StepsPerSec float64 `json:"steps_per_sec"`
	Commands    int     `json:"commands"`
	P50Ms       float64 `json:"p50_ms"`
	P95Ms       float64 `json:"p95_ms"`
	P99Ms       float64 `json:"p99_ms"`
	// Baseline is always MethodWatermillSQL, measured first.
	Baseline      string  `json:"baseline"`
	BaselineP50Ms float64 `json:"baseline_p50_ms"`
	// Ratio is BaselineP50Ms / P50Ms: how many times sooner than the
	// baseline half the commands reach their handler.
	Ratio float64 `json:"ratio"`
}

// The methods of the command scenario.
const (
	// MethodWatermillSQL publishes with watermill-sql's publisher on the
	// step's transaction and consumes with its subscriber at its default
	// poll interval (1s).
	MethodWatermillSQL = "watermill_sql"
	// MethodCommandFeed appends the command to its command stream in the
	// step's unit and delivers it with the command package (converge's
	// feed, woken by LISTEN/NOTIFY).
	MethodCommandFeed = "feed"
)

type (
	benchStepStarted struct{ ID string }
	benchPing        struct{ ID string }
)

const (
	benchStepProcessor = "bench_command_step"
	benchPingType      = "bench.ping"
	benchPingTopic     = "bench_ping"
)

// Command measures, per command, the time from the commit of the step that
// sends it to the start of its handler, in the shape of a deployment where
// sagas and command handlers run in different processes: one store runs
// the step (a feed processor whose handler sends one command in its unit,
// as a saga step does), another the command handler. The baseline sends
// the same commands through watermill-sql instead, published on the
// step's transaction, which is the other way to make a command leave if
// and only if its step commits.
func Command(ctx context.Context, pool *pgxpool.Pool, schema string, cfg *CommandConfig, out io.Writer) ([]CommandResult, error) {
	res, err := runCommand(ctx, pool, schema, cfg, out)
	return res, interrupted(ctx, err)
}

func runCommand(ctx context.Context, pool *pgxpool.Pool, schema string, cfg *CommandConfig, out io.Writer) ([]CommandResult, error) {
	c := CommandConfig{}
	if cfg != nil {
		c = *cfg
	}
	if c.Rate <= 0 {
		c.Rate = 200
	}
	if c.Duration <= 0 {
		c.Duration = 5 * time.Second
	}
	var results []CommandResult
	for _, m := range []string{MethodWatermillSQL, MethodCommandFeed} {
		r, err := runCommandMethod(ctx, pool, schema, m, c)
		if err != nil {
			return results, fmt.Errorf("bench: command %s: %w", m, err)
		}
		r.Baseline, r.BaselineP50Ms = MethodWatermillSQL, r.P50Ms
		if len(results) > 0 {
			r.BaselineP50Ms = results[0].P50Ms
		}
		r.Ratio = ratio(r.BaselineP50Ms, r.P50Ms)
		results = append(results, r)
		if err := writeLine(ctx, out, r); err != nil {
			return results, err
		}
	}
	return results, nil
}

// commandClock pairs each command's step commit with its handler's start.
type commandClock struct {
	mu        sync.Mutex
	committed map[string]time.Time
	received  map[string]time.Time
	all       chan struct{}
	want      int
	// prefix starts the ids of the phase being measured; a late command
	// of an earlier phase is not counted.
	prefix string
}

func newCommandClock() *commandClock {
	return &commandClock{committed: map[string]time.Time{}, received: map[string]time.Time{}}
}

// expect starts a phase of n commands whose ids start with prefix: the
// clock forgets the last phase, and closes the returned channel once n of
// this phase were received.
func (k *commandClock) expect(prefix string, n int) <-chan struct{} {
	k.mu.Lock()
	defer k.mu.Unlock()
	clear(k.committed)
	clear(k.received)
	k.prefix, k.want, k.all = prefix, n, make(chan struct{})
	return k.all
}

func (k *commandClock) commit(id string) {
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.committed[id] = now
}

func (k *commandClock) receive(id string) {
	now := time.Now()
	k.mu.Lock()
	defer k.mu.Unlock()
	if !strings.HasPrefix(id, k.prefix) {
		return // late, from an earlier phase
	}
	if _, seen := k.received[id]; seen {
		return // a redelivery: the first delivery is the one measured
	}
	k.received[id] = now
	if len(k.received) == k.want {
		close(k.all)
	}
}

// latencies returns each received command's delay after its step's
// commit, sorted. A handler can start before the step's AfterCommit hook
// has run; that counts as no delay.
func (k *commandClock) latencies() []time.Duration {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make([]time.Duration, 0, len(k.received))
	for id, got := range k.received {
		if at, ok := k.committed[id]; ok {
			out = append(out, max(got.Sub(at), 0))
		}
	}
	slices.Sort(out)
	return out
}

func commandRegistry() *events.Registry {
	reg := events.NewRegistry()
	events.Register[benchStepStarted](reg, "bench.step_started")
	events.Register[benchPing](reg, benchPingType)
	return reg
}

func runCommandMethod(ctx context.Context, pool *pgxpool.Pool, schema, method string, c CommandConfig) (CommandResult, error) {
	quiet := slog.New(slog.DiscardHandler)
	// The stepping process and the handling process each have a store of
	// their own, as two processes would.
	stepper, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: schema, Registry: commandRegistry(), Logger: quiet})
	if err != nil {
		return CommandResult{}, err
	}
	defer stepper.Close()
	handler, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: schema, Registry: commandRegistry(), Logger: quiet})
	if err != nil {
		return CommandResult{}, err
	}
	defer handler.Close()

	clock := newCommandClock()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	if err != nil {
		return CommandResult{}, err
	}
	var send func(ctx context.Context, u feed.Unit, id string) error
	switch method {
	case MethodCommandFeed:
		cp, err := command.NewProcessor(&command.ProcessorConfig{
			Store: handler, Router: router, Subscriber: feed.SubscriberConfig{Logger: quiet},
		})
		if err != nil {
			return CommandResult{}, err
		}
		if err := cp.AddHandlers(cqrs.NewCommandHandler("ping", func(_ context.Context, p *benchPing) error {
			clock.receive(p.ID)
			return nil
		})); err != nil {
			return CommandResult{}, err
		}
		send = func(ctx context.Context, u feed.Unit, id string) error {
			_, err := u.Append(ctx, command.StreamFor(benchPingType, id), events.AnyVersion,
				events.Event{Data: benchPing{ID: id}, Metadata: events.Metadata{CorrelationID: id}})
			return err
		}
	case MethodWatermillSQL:
		sch := wsql.DefaultPostgreSQLSchema{GenerateMessagesTableName: func(topic string) string {
			return pgx.Identifier{schema, "watermill_" + topic}.Sanitize()
		}}
		offsets := wsql.DefaultPostgreSQLOffsetsAdapter{GenerateMessagesOffsetsTableName: func(topic string) string {
			return pgx.Identifier{schema, "watermill_offsets_" + topic}.Sanitize()
		}}
		sub, err := wsql.NewSubscriber(wsql.BeginnerFromPgx(pool), wsql.SubscriberConfig{
			ConsumerGroup: "bench", SchemaAdapter: sch, OffsetsAdapter: offsets, InitializeSchema: true,
		}, watermill.NopLogger{})
		if err != nil {
			return CommandResult{}, err
		}
		defer func() { _ = sub.Close() }()
		if err := sub.SubscribeInitialize(benchPingTopic); err != nil {
			return CommandResult{}, err
		}
		router.AddConsumerHandler("ping", benchPingTopic, sub, func(msg *message.Message) error {
			var p benchPing
			if err := json.Unmarshal(msg.Payload, &p); err != nil {
				return err
			}
			clock.receive(p.ID)
			return nil
		})
		send = func(ctx context.Context, _ feed.Unit, id string) error {
			tx, err := pgstore.TxFromContext(ctx)
			if err != nil {
				return err
			}
			pub, err := wsql.NewPublisher(wsql.TxFromPgx(tx), wsql.PublisherConfig{SchemaAdapter: sch}, watermill.NopLogger{})
			if err != nil {
				return err
			}
			payload, err := json.Marshal(benchPing{ID: id})
			if err != nil {
				return err
			}
			return pub.Publish(benchPingTopic, message.NewMessage(watermill.NewUUID(), payload))
		}
	default:
		return CommandResult{}, fmt.Errorf("unknown method %q", method)
	}

	step, err := feed.NewProcessor(stepper, &feed.ProcessorConfig{
		Name: benchStepProcessor + "_" + method, Categories: []string{stepCategory(method)},
		Subscriber: feed.SubscriberConfig{Logger: quiet}, Logger: quiet,
	}, func(ctx context.Context, env events.Envelope) error {
		eu, _ := events.UnitFromContext(ctx)
		u, ok := eu.(feed.Unit)
		if !ok {
			return errors.New("the step's delivery carries no unit")
		}
		id := env.StreamID
		if err := send(ctx, u, id); err != nil {
			return err
		}
		u.AfterCommit(func() { clock.commit(id) })
		return nil
	})
	if err != nil {
		return CommandResult{}, err
	}
	defer func() { _ = step.Close() }()
	if err := step.AddHandlers(router); err != nil {
		return CommandResult{}, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- router.Run(rctx) }()
	defer func() {
		cerr := router.Close()
		cancel()
		_ = errors.Join(cerr, <-done) // the figures are taken; a slow shutdown changes nothing
	}()
	select {
	case <-router.Running():
	case <-ctx.Done():
		return CommandResult{}, ctx.Err()
	}

	if _, _, err := sendSteps(ctx, stepper, clock, stepCategory(method)+"-w", c.Rate, min(c.Duration/5, time.Second)); err != nil {
		return CommandResult{}, fmt.Errorf("warm-up: %w", err)
	}
	n, perSec, err := sendSteps(ctx, stepper, clock, stepCategory(method)+"-m", c.Rate, c.Duration)
	if err != nil {
		return CommandResult{}, err
	}
	lat := clock.latencies()
	return CommandResult{
		Scenario: "command", Method: method, Rate: c.Rate, StepsPerSec: perSec, Commands: n,
		P50Ms: ms(percentile(lat, 0.50)), P95Ms: ms(percentile(lat, 0.95)), P99Ms: ms(percentile(lat, 0.99)),
	}, nil
}

// stepCategory is the category of a method's step streams: each method's
// step processor reads its own, so the second does not replay the first's.
func stepCategory(method string) string { return "benchstep_" + method }

// stepSenders is how many goroutines start the steps of a run: one
// appends about 2,000 a second on a 2-core machine, short of --rate's
// documented range.
const stepSenders = 8

// sendSteps starts a step every 1/rate for d, each on a stream of its own
// (ids prefix0, prefix1, ...), from stepSenders senders taking the
// scheduled slots in turn (each step is a stream and a command of its
// own, so their order does not matter), and waits until every step's
// command reached its handler. It returns how many it sent and the rate
// their appends reached.
func sendSteps(ctx context.Context, st *pgstore.Store, clock *commandClock, prefix string, rate int, d time.Duration) (int, float64, error) {
	_, total := schedule(rate, d)
	all := clock.expect(prefix, total)
	sent, err := pace(ctx, rate, d, stepSenders, func(ctx context.Context, i int) error {
		id := fmt.Sprintf("%s%d", prefix, i)
		_, err := st.Append(ctx, id, events.NoStream, events.Event{Data: benchStepStarted{ID: id}})
		return err
	})
	if err != nil {
		return sent.n, sent.perSec(), err
	}
	// Every command is in the handler's hands within the poll interval
	// plus the queue's drain; the bound only stops a broken run.
	wait := time.NewTimer(d + 30*time.Second)
	defer wait.Stop()
	select {
	case <-all:
		return total, sent.perSec(), nil
	case <-wait.C:
		return total, sent.perSec(), fmt.Errorf("only %d of %d commands reached their handler", total-clock.missing(), total)
	case <-ctx.Done():
		return total, sent.perSec(), ctx.Err()
	}
}

func (k *commandClock) missing() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.want - len(k.received)
}
