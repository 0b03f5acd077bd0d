package orders

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// Backend is the store the demo runs on: *memstore.Store or *pgstore.Store.
type Backend interface {
	events.Store
	feed.Source
	feed.CheckpointWatcher
	feed.Inspector
}

// Config configures Run.
type Config struct {
	// Store is where events, checkpoints and read models live. Its
	// registry must have the workflow's types (Register). Required.
	Store Backend
	// Out receives the narrative. Defaults to io.Discard.
	Out io.Writer
	// Logger receives the components' logs. Defaults to a discarding
	// logger: the narrative is the demo's output.
	Logger *slog.Logger
	// StaleDeadline is how long the stale read waits. Defaults to 300ms.
	StaleDeadline time.Duration
}

// Outcome is what a run ended with, for tests.
type Outcome struct {
	Statuses       map[string]string
	CustomerOrders int
	// StaleRead is the read made while order_summary was paused.
	StaleRead consistency.Status
	// FreshRead is the same read after the projection came back.
	FreshRead consistency.Status
}

// system is the running workflow.
type system struct {
	cfg      Config
	store    Backend
	tracker  *consistency.Tracker
	catalog  *consistency.Catalog
	runner   atomic.Pointer[projections.Runner]
	router   *message.Router
	sub      *feed.Subscriber
	stopped  chan struct{}
	out      io.Writer
	customer string
}

// Run plays the order/payment workflow and narrates it to cfg.Out: orders
// are placed, a strong read model answers at once, the order summary is
// read with a consistency token, the payment step decides only on
// caught-up reads, and a paused projection shows a stale answer, the lag
// report, and the recovery.
func Run(ctx context.Context, cfg *Config) (*Outcome, error) {
	c := *cfg
	if c.Store == nil {
		return nil, errors.New("orders: Config.Store is required")
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.StaleDeadline <= 0 {
		c.StaleDeadline = 300 * time.Millisecond
	}
	s := &system{cfg: c, store: c.Store, out: c.Out, catalog: &consistency.Catalog{}, customer: "c-7"}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	defer s.stop(context.WithoutCancel(ctx))
	return s.play(ctx)
}

func (s *system) say(format string, args ...any) { fmt.Fprintf(s.out, format+"\n", args...) }

func (s *system) start(ctx context.Context) error {
	var err error
	s.tracker, err = consistency.NewTracker(&consistency.TrackerConfig{
		Positions:   s.store.Checkpoints(),
		Watcher:     s.store,
		PushHealthy: s.store.PushHealthy,
		Counter:     s.store,
		Logger:      s.cfg.Logger,
	})
	if err != nil {
		return err
	}
	if err := s.tracker.Start(ctx); err != nil {
		return err
	}
	if err := s.startProjections(ctx, s.catalog); err != nil {
		return err
	}
	return s.startPayments(ctx)
}

func (s *system) startProjections(ctx context.Context, catalog *consistency.Catalog) error {
	r, err := projections.NewRunner(&projections.RunnerConfig{
		Source:      s.store,
		Projections: []*projections.Projection{NewOrderSummary(), NewCustomerOrders()},
		Tracker:     s.tracker,
		Catalog:     catalog,
		Logger:      s.cfg.Logger,
	})
	if err != nil {
		return err
	}
	if err := r.Start(ctx); err != nil {
		return err
	}
	s.runner.Store(r)
	return nil
}

func (s *system) startPayments(ctx context.Context) error {
	sub, err := feed.NewSubscriber(s.store, &feed.SubscriberConfig{
		ConsumerName:   PaymentsConsumer,
		NackBackoffMin: 50 * time.Millisecond,
		NackBackoffMax: 500 * time.Millisecond,
		Logger:         s.cfg.Logger,
	})
	if err != nil {
		return err
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NewSlogLogger(s.cfg.Logger))
	if err != nil {
		return err
	}
	router.AddMiddleware(middleware.Recoverer)
	pay := &Payments{Store: s.store, Tracker: s.tracker, Summaries: func() *projections.View {
		return s.runner.Load().View(OrderSummary)
	}}
	router.AddConsumerHandler(PaymentsConsumer, feed.TopicAll, sub, pay.Handle)
	s.router, s.sub, s.stopped = router, sub, make(chan struct{})
	go func() {
		defer close(s.stopped)
		_ = router.Run(context.WithoutCancel(ctx))
	}()
	select {
	case <-router.Running():
		return nil
	case <-s.stopped:
		return errors.New("orders: the payments router stopped while starting")
	}
}

func (s *system) stop(ctx context.Context) {
	if s.router != nil {
		_ = s.router.Close()
		<-s.stopped
		_ = s.sub.Close()
	}
	if r := s.runner.Load(); r != nil {
		_ = r.Stop(ctx)
	}
	_ = s.tracker.Stop(ctx)
}

// place appends an order; while the runner runs, its append hook updates
// the strong customer_orders read model in the same unit of work.
func (s *system) place(ctx context.Context, orderID string, cents int64) (events.Token, error) {
	res, err := s.runner.Load().Appender().Append(ctx, OrderStream(orderID), events.NoStream, events.Event{
		Data:     OrderPlaced{OrderID: orderID, CustomerID: s.customer, AmountCents: cents},
		Metadata: events.Metadata{CorrelationID: "demo-" + orderID},
	})
	if err != nil {
		return events.Token{}, err
	}
	s.say("→ placed order %s for %s (%.2f EUR); the write returned token %s", orderID, s.customer, float64(cents)/100, res.Token)
	return res.Token, nil
}

// summary reads an order's summary as of tok, within deadline.
func (s *system) summary(ctx context.Context, orderID string, tok events.Token, deadline time.Duration) (consistency.Result[Summary], error) {
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	return consistency.Read(ctx, s.tracker, tok, []string{OrderSummary}, func(ctx context.Context) (Summary, error) {
		sum, _, err := projections.Get[Summary](context.WithoutCancel(ctx), s.runner.Load().View(OrderSummary).Table("orders"), orderID)
		return sum, err
	})
}

// settled waits until the payment step has handled the order placed at tok,
// then returns a token covering what it wrote: the payment step commits its
// events with its checkpoint, so the head after it passed tok covers them.
func (s *system) settled(ctx context.Context, tok events.Token) (events.Token, error) {
	st, err := s.tracker.Wait(ctx, tok, PaymentsConsumer)
	if err != nil {
		return events.Token{}, err
	}
	if st.Stale {
		return events.Token{}, fmt.Errorf("orders: the payment step did not handle %s within the deadline", tok)
	}
	return s.store.Head(ctx)
}

func (s *system) show(label string, r consistency.Result[Summary]) {
	fresh := "fresh"
	if r.Stale {
		fresh = fmt.Sprintf("STALE (%d events behind, deadline hit)", r.Behind)
	}
	status := r.Value.Status
	if status == "" {
		status = "(not in the read model yet)"
	}
	if r.Value.Reason != "" {
		status += " — " + r.Value.Reason
	}
	s.say("  %s: status %s; %s, checkpoint %s, waited %s", label, status, fresh, r.Checkpoint, r.Waited.Round(100*time.Microsecond))
}

func (s *system) play(ctx context.Context) (*Outcome, error) {
	out := &Outcome{Statuses: map[string]string{}}
	s.say("converge demo: an order/payment workflow on a consistency-aware event store\n")

	s.say("1. Read your own write")
	tok, err := s.place(ctx, "o-1", 4990)
	if err != nil {
		return nil, err
	}
	count, _, err := projections.Get[CustomerCount](ctx, s.runner.Load().View(CustomerOrders).Table("customers"), s.customer)
	if err != nil {
		return nil, err
	}
	s.say("  customer_orders (strong, same transaction): %s has %d order(s) — no wait needed", s.customer, count.Orders)
	r, err := s.summary(ctx, "o-1", tok, 2*time.Second)
	if err != nil {
		return nil, err
	}
	s.show("order_summary (eventual) read with the token", r)

	s.say("\n2. The payment step decides only on caught-up reads")
	for _, o := range []struct {
		id    string
		cents int64
	}{{"o-1", 0}, {"o-2", 250_000}} {
		if o.cents > 0 {
			if tok, err = s.place(ctx, o.id, o.cents); err != nil {
				return nil, err
			}
		}
		after, err := s.settled(ctx, tok)
		if err != nil {
			return nil, err
		}
		if r, err = s.summary(ctx, o.id, after, 2*time.Second); err != nil {
			return nil, err
		}
		s.show("order_summary after the payment step", r)
	}

	s.say("\n3. A paused projection: the read says it is stale instead of lying")
	if err := s.runner.Load().Stop(ctx); err != nil {
		return nil, err
	}
	s.say("  (order_summary's runner is stopped)")
	if tok, err = s.place(ctx, "o-3", 1250); err != nil {
		return nil, err
	}
	if r, err = s.summary(ctx, "o-3", tok, s.cfg.StaleDeadline); err != nil {
		return nil, err
	}
	out.StaleRead = r.Status
	s.show(fmt.Sprintf("order_summary read with a %s deadline", s.cfg.StaleDeadline), r)
	// A tight SLA for the demo, so the report shows the breach a paused
	// projection is.
	sla := s.cfg.StaleDeadline * 2 / 3
	mon, err := lag.NewMonitor(s.store, &lag.Config{Logger: s.cfg.Logger, Projections: []lag.Target{
		{Name: OrderSummary, SLA: sla}, {Name: PaymentsConsumer, SLA: sla},
	}})
	if err != nil {
		return nil, err
	}
	reports, err := mon.Check(ctx)
	if err != nil {
		return nil, err
	}
	s.say("  lag report (converge lag), with a %s SLA for the demo:", sla)
	if err := lag.Table(&indent{w: s.out, start: true}, reports); err != nil {
		return nil, err
	}
	s.say("  (the payment step waits too: it will not decide on o-3 until order_summary catches up)")

	s.say("\n4. The projection comes back and catches up")
	if err := s.startProjections(ctx, nil); err != nil {
		return nil, err
	}
	if r, err = s.summary(ctx, "o-3", tok, 2*time.Second); err != nil {
		return nil, err
	}
	out.FreshRead = r.Status
	s.show("order_summary read with the same token", r)
	after, err := s.settled(ctx, tok)
	if err != nil {
		return nil, err
	}
	if r, err = s.summary(ctx, "o-3", after, 2*time.Second); err != nil {
		return nil, err
	}
	s.show("order_summary after the payment step", r)

	for _, id := range []string{"o-1", "o-2", "o-3"} {
		sum, _, err := projections.Get[Summary](ctx, s.runner.Load().View(OrderSummary).Table("orders"), id)
		if err != nil {
			return nil, err
		}
		out.Statuses[id] = sum.Status
	}
	// o-3 was placed while the runner was stopped, so no append hook
	// applied it to the strong customer_orders: its processor does, after
	// the restart. Wait for it like for any read model.
	if st, err := s.tracker.Wait(ctx, after, CustomerOrders); err != nil {
		return nil, err
	} else if st.Stale {
		return nil, fmt.Errorf("orders: %s did not catch up with %s", CustomerOrders, after)
	}
	count, _, err = projections.Get[CustomerCount](ctx, s.runner.Load().View(CustomerOrders).Table("customers"), s.customer)
	if err != nil {
		return nil, err
	}
	out.CustomerOrders = count.Orders

	s.say("\nRead models and their consistency:\n")
	s.say("%s", s.catalog.MarkdownTable())
	return out, nil
}

// indent prefixes every line with four spaces.
type indent struct {
	w     io.Writer
	start bool // the next byte starts a line
}

func (i *indent) Write(p []byte) (int, error) {
	var b []byte
	for _, c := range p {
		if i.start {
			b = append(b, "    "...)
		}
		b = append(b, c)
		i.start = c == '\n'
	}
	if _, err := i.w.Write(b); err != nil {
		return 0, err
	}
	return len(p), nil
}
