package web

// This file is the only one that knows the order domain of
// examples/orders: its events, its order_summary read model and its payment
// step. Everything else in the package talks to the Orders and Ops
// interfaces. To serve another domain, write another file like this one.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/google/uuid"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/projections"
)

// ordersTable is the order_summary table holding one row per order.
const ordersTable = "orders"

// listScanBatch is how many rows List reads at a time while it looks for a
// customer's orders: order_summary has no per-customer index.
const listScanBatch = 500

// listScanMax bounds the rows one List call reads. Past it, List returns
// the orders it found (perhaps none) with a cursor to carry on from, so one
// request never scans a large table whole.
const listScanMax = 20 * listScanBatch

// AppConfig configures an App.
type AppConfig struct {
	// Store holds the events, checkpoints and read models: a
	// *memstore.Store or a *pgstore.Store (migrated), whose registry has
	// the order events (orders.Register). Required.
	Store orders.Backend
	// OnChange receives each committed change of an order's view, from the
	// projection's goroutine: it must not block (Server.Publish does not).
	// Defaults to nil.
	OnChange func(OrderView)
	// Logger receives the components' logs. Defaults to slog.Default().
	Logger *slog.Logger
}

// App runs the order workflow of examples/orders in process (its
// projections, its payment step and a consistency.Tracker) and offers it
// as Orders and Ops.
type App struct {
	cfg     AppConfig
	tracker *consistency.Tracker
	catalog *consistency.Catalog
	runner  *projections.Runner
	// scanBatch and scanMax are listScanBatch and listScanMax; tests
	// shrink them.
	scanBatch, scanMax int

	router     *message.Router
	sub        *feed.Subscriber
	routerDone chan struct{}
}

var _ Orders = (*App)(nil)

// NewApp builds an App. Start runs it.
func NewApp(cfg *AppConfig) (*App, error) {
	if cfg == nil || cfg.Store == nil {
		return nil, errors.New("web: AppConfig.Store is nil (pass a *memstore.Store or a migrated *pgstore.Store)")
	}
	c := *cfg
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{
		Positions:   c.Store.Checkpoints(),
		Watcher:     c.Store,
		PushHealthy: c.Store.PushHealthy,
		Counter:     c.Store,
		Logger:      c.Logger,
	})
	if err != nil {
		return nil, err
	}
	a := &App{cfg: c, tracker: tr, catalog: &consistency.Catalog{}, scanBatch: listScanBatch, scanMax: listScanMax}
	a.runner, err = projections.NewRunner(&projections.RunnerConfig{
		Source:      c.Store,
		Projections: []*projections.Projection{orders.NewOrderSummary(), orders.NewCustomerOrders()},
		Tracker:     tr,
		Catalog:     a.catalog,
		OnUpdate:    a.onUpdate,
		Logger:      c.Logger,
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Start starts the tracker, the projections and the payment step. It does
// not block.
func (a *App) Start(ctx context.Context) error {
	if err := a.tracker.Start(ctx); err != nil {
		return err
	}
	if err := a.runner.Start(ctx); err != nil {
		return err
	}
	sub, err := feed.NewSubscriber(a.cfg.Store, &feed.SubscriberConfig{
		ConsumerName:   orders.PaymentsConsumer,
		NackBackoffMin: 50 * time.Millisecond,
		NackBackoffMax: 500 * time.Millisecond,
		Logger:         a.cfg.Logger,
	})
	if err != nil {
		return err
	}
	router, err := message.NewRouter(message.RouterConfig{}, watermill.NewSlogLogger(a.cfg.Logger))
	if err != nil {
		return err
	}
	router.AddMiddleware(middleware.Recoverer)
	pay := &orders.Payments{Store: a.cfg.Store, Tracker: a.tracker, Summaries: func() *projections.View {
		return a.runner.View(orders.OrderSummary)
	}}
	router.AddConsumerHandler(orders.PaymentsConsumer, feed.TopicAll, sub, pay.Handle)
	a.router, a.sub, a.routerDone = router, sub, make(chan struct{})
	go func() {
		defer close(a.routerDone)
		_ = router.Run(context.WithoutCancel(ctx))
	}()
	select {
	case <-router.Running():
		return nil
	case <-a.routerDone:
		return errors.New("web: the payment step's router stopped while starting")
	}
}

// Stop stops the payment step, the projections and the tracker.
func (a *App) Stop(ctx context.Context) error {
	var errs []error
	if a.router != nil {
		errs = append(errs, a.router.Close())
		<-a.routerDone
		errs = append(errs, a.sub.Close())
	}
	errs = append(errs, a.runner.Stop(ctx), a.tracker.Stop(ctx))
	return errors.Join(errs...)
}

// Tracker is the tracker the projections advance: give it to Config.
func (a *App) Tracker() *consistency.Tracker { return a.tracker }

// Catalog lists the read models and their consistency: give it to Config.
func (a *App) Catalog() *consistency.Catalog { return a.catalog }

// ReadModels are the projections Get and List read: give them to Config.
func (a *App) ReadModels() []string { return []string{orders.OrderSummary} }

// LagTargets are the consumers a lag.Monitor should watch: every eventual
// read model with its declared SLA, and the payment step with defaultSLA.
// Strong read models have no lag.
func (a *App) LagTargets(defaultSLA time.Duration) []lag.Target {
	var ts []lag.Target
	for _, m := range a.catalog.ReadModels() {
		if m.Class == consistency.Eventual {
			ts = append(ts, lag.Target{Name: m.Name, SLA: m.SLA, Class: string(m.Class)})
		}
	}
	return append(ts, lag.Target{Name: orders.PaymentsConsumer, SLA: defaultSLA, Class: "consumer"})
}

// Ops is the dashboard's view of this domain: no sagas yet, and the
// projections' dead letters.
func (a *App) Ops() Ops { return appOps{app: a} }

// Place appends OrderPlaced through the runner's Appender, so the strong
// customer_orders read model commits with it.
func (a *App) Place(ctx context.Context, cmd PlaceOrder) (string, events.Token, error) {
	u, err := uuid.NewV7() // time-ordered: List pages in placing order
	if err != nil {
		return "", events.Token{}, err
	}
	id := u.String()
	res, err := a.runner.Appender().Append(ctx, orders.OrderStream(id), events.NoStream, events.Event{
		Data:     orders.OrderPlaced{OrderID: id, CustomerID: cmd.CustomerID, AmountCents: cmd.AmountCents},
		Metadata: events.Metadata{CorrelationID: id},
	})
	if err != nil {
		return "", events.Token{}, fmt.Errorf("place order: %w", err)
	}
	return id, res.Token, nil
}

// Get reads an order's row from order_summary.
func (a *App) Get(ctx context.Context, id string) (OrderView, bool, error) {
	row, ok, err := a.runner.View(orders.OrderSummary).Table(ordersTable).GetRow(ctx, id)
	if err != nil || !ok {
		return OrderView{}, false, err
	}
	v, err := viewOf(row.Value, row.Token)
	return v, err == nil, err
}

// List scans order_summary for the customer's orders, in id order (which
// is placing order). A page may hold fewer than page.Limit orders and still
// have a next cursor: the scan stops after listScanMax rows.
func (a *App) List(ctx context.Context, customer string, page PageQuery) ([]OrderView, string, error) {
	if page.After != "" && validateID(page.After) != nil {
		return nil, "", ErrInvalidCursor
	}
	t := a.runner.View(orders.OrderSummary).Table(ordersTable)
	var out []OrderView
	after := page.After
	for scanned := 0; ; {
		rows, err := t.List(ctx, &projections.ListOptions{After: after, Limit: a.scanBatch})
		if err != nil {
			return nil, "", err
		}
		for _, r := range rows {
			v, err := viewOf(r.Value, r.Token)
			if err != nil {
				return nil, "", err
			}
			if v.CustomerID != customer {
				continue
			}
			if len(out) == page.Limit {
				// One more exists: this page ends at the last one taken.
				return out, out[len(out)-1].OrderID, nil
			}
			out = append(out, v)
		}
		if len(rows) < a.scanBatch {
			return out, "", nil
		}
		after = rows[len(rows)-1].Key
		if scanned += len(rows); scanned >= a.scanMax {
			return out, after, nil
		}
	}
}

// onUpdate turns committed order_summary rows into views for OnChange.
func (a *App) onUpdate(u projections.Update) {
	if a.cfg.OnChange == nil || u.Projection != orders.OrderSummary || u.Table != ordersTable || u.Kind != projections.UpdatePut {
		return
	}
	v, err := viewOf(u.Value, u.Token)
	if err != nil {
		a.cfg.Logger.Error("web: undecodable order_summary row", "key", u.Key, "error", err)
		return
	}
	a.cfg.OnChange(v)
}

// viewOf maps an order_summary row onto the API's view.
func viewOf(raw []byte, tok events.Token) (OrderView, error) {
	var s orders.Summary
	if err := json.Unmarshal(raw, &s); err != nil {
		return OrderView{}, fmt.Errorf("decode order_summary row: %w", err)
	}
	status := StatusPending
	switch s.Status {
	case orders.StatusPaid:
		status = StatusConfirmed
	case orders.StatusCancelled:
		status = StatusCancelled
	}
	return OrderView{OrderID: s.OrderID, CustomerID: s.CustomerID, AmountCents: s.AmountCents, Status: status, Reason: s.Reason, Position: tok}, nil
}

// appOps reports the projections' dead letters; there is no saga engine in
// this domain yet.
type appOps struct {
	NoOps
	app *App
}

func (o appOps) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	var out []DeadLetter
	for _, name := range []string{orders.CustomerOrders, orders.OrderSummary} {
		dls, err := o.app.runner.DeadLetters(ctx, name)
		if err != nil {
			return nil, err
		}
		for _, d := range dls {
			out = append(out, DeadLetter{
				ID: fmt.Sprintf("%s/%d", d.Projection, d.ID), Consumer: d.Projection, EventID: d.EventID, EventType: d.Type,
				StreamID: d.StreamID, Position: d.Token, Reason: d.Reason, Attempts: d.Attempts, At: d.CreatedAt,
			})
		}
	}
	slices.SortFunc(out, func(x, y DeadLetter) int { return x.At.Compare(y.At) })
	return out, nil
}
