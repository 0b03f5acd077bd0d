package web

// This file is the only one that knows the order domain of
// examples/orders: its catalog, its read models and its fulfilment saga.
// Everything else in the package talks to the Orders and Ops interfaces.
// To serve another domain, write another file like this one.

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"github.com/google/uuid"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// summaryTable is the order_summary table holding one row per order;
// customerOrdersTable is customer_orders' table, keyed "customer/order".
const (
	summaryTable        = "orders"
	customerOrdersTable = "orders"
)

// AppConfig configures an App.
type AppConfig struct {
	// Store holds the events, checkpoints, read models and saga instances:
	// a *memstore.Store or a migrated *pgstore.Store whose registry has
	// the order types (orders.NewRegistry). Required.
	Store converge.Store
	// Orders configures the order service (credit limit, payment timeout,
	// metrics, BeforeApply...). Its OnUpdate, when set, is still called,
	// after OnChange. Defaults to the orders.Config defaults.
	Orders orders.Config
	// OnChange receives each committed change of an order's view, from the
	// projection's goroutine: it must not block (Server.Publish does not).
	// Defaults to nil.
	OnChange func(OrderView)
	// Logger receives the components' logs. Defaults to Orders.Logger,
	// then slog.Default().
	Logger *slog.Logger
}

// App runs the order service of examples/orders in process (its read
// models, its fulfilment saga and command handlers, on a converge.Client)
// and offers it as Orders and Ops.
type App struct {
	cfg    AppConfig
	orders *orders.App
}

var _ Orders = (*App)(nil)

// NewApp builds an App. Start runs it.
func NewApp(cfg *AppConfig) (*App, error) {
	if cfg == nil || cfg.Store == nil {
		return nil, errors.New("web: AppConfig.Store is nil (pass a *memstore.Store or a migrated *pgstore.Store built with orders.NewRegistry())")
	}
	c := *cfg
	c.Logger = cmp.Or(c.Logger, c.Orders.Logger, slog.Default())
	a := &App{cfg: c}
	oc := c.Orders
	oc.Logger = c.Logger
	oc.OnUpdate = a.onUpdate
	var err error
	if a.orders, err = orders.NewApp(c.Store, &oc); err != nil {
		return nil, err
	}
	return a, nil
}

// Start runs the order service. It does not block.
func (a *App) Start(ctx context.Context) error { return a.orders.Start(ctx) }

// Stop drains and stops the order service.
func (a *App) Stop(ctx context.Context) error { return a.orders.Stop(ctx) }

// Service is the order service itself (Restock, Await...).
func (a *App) Service() *orders.App { return a.orders }

// Client is the converge client the service runs on.
func (a *App) Client() *converge.Client { return a.orders.Client() }

// Tracker is the tracker the read models advance: give it to Config.
func (a *App) Tracker() *consistency.Tracker { return a.Client().Tracker() }

// Catalog lists the read models and their declared consistency: give it
// to Config.
func (a *App) Catalog() *consistency.Catalog { return a.Client().Catalog() }

// ReadModels are the read models Get and List wait on: give them to
// Config. customer_orders is strong, so order_summary is the one to wait
// for.
func (a *App) ReadModels() []string { return []string{orders.OrderSummary} }

// Lag is the client's lag monitor, which measures every read model
// against the SLA it declares: feed a LagHistory from it.
func (a *App) Lag() *lag.Monitor { return a.Client().Lag() }

// StockShelves tops every SKU of the catalog up to qty units on the shelf,
// so orders can be reserved: a server started again on the same database
// adds what was sold since, not qty more.
func (a *App) StockShelves(ctx context.Context, qty int) error {
	for _, sku := range SKUs() {
		have, err := a.orders.OnHand(ctx, sku)
		if err != nil {
			return err
		}
		if have >= qty {
			continue
		}
		if _, err := a.orders.Restock(ctx, sku, qty-have); err != nil {
			return err
		}
	}
	return nil
}

// SKUs are the catalog's products, sorted.
func SKUs() []string {
	skus := make([]string, 0, len(orders.Catalog))
	for sku := range orders.Catalog {
		skus = append(skus, sku)
	}
	slices.Sort(skus)
	return skus
}

// RandomOrder is a simulated order of customer for RunLoad: a few units
// (1 to MaxRandomQty) of a random product, mostly paid by a card the
// gateway charges, now and then by one it declines.
func RandomOrder(customer string) PlaceOrder {
	skus := SKUs()
	card := orders.CardOK
	if rand.IntN(10) == 0 { //nolint:gosec // simulated traffic, not security
		card = orders.CardDeclined
	}
	return PlaceOrder{
		CustomerID: customer,
		SKU:        skus[rand.IntN(len(skus))],  //nolint:gosec // simulated traffic
		Qty:        1 + rand.IntN(MaxRandomQty), //nolint:gosec // simulated traffic
		Card:       card,
	}
}

// MaxRandomQty is the most units a RandomOrder asks for.
const MaxRandomQty = 3

// Ops is the dashboard's view of the service: the fulfilment saga's
// instances on the client's saga engine, and the dead letters of the read
// models and of the saga processor.
func (a *App) Ops() Ops { return appOps{app: a} }

// Place places the order through the order service, which appends
// OrderPlaced (the strong customer_orders commits with it) and leaves the
// rest to the fulfilment saga. The id is time-ordered, so a customer's
// orders list in placing order.
//
// With an Idempotency-Key the id derives from the customer and the key
// instead, so placing again is placing the same order, which the store
// answers with the first result (orders.PlaceOrder.OrderID), and another
// order under it is refused. Such an order lists by that id, not in
// placing order. The domain compares what it keeps: the card's spelling
// does not count, and two cards the gateway charges that end in the same
// four digits tokenize alike (orders.Tokenize), so they are one order.
func (a *App) Place(ctx context.Context, cmd PlaceOrder) (string, events.Token, error) {
	if _, ok := orders.Catalog[cmd.SKU]; !ok {
		return "", events.Token{}, &ValidationError{Fields: []FieldError{{
			Field: "sku", Message: fmt.Sprintf("%q is not in the catalog (%s)", cmd.SKU, strings.Join(SKUs(), ", ")),
		}}}
	}
	id := ""
	if cmd.IdempotencyKey != "" {
		id = keyedOrderID(cmd.CustomerID, cmd.IdempotencyKey)
	} else {
		u, err := uuid.NewV7()
		if err != nil {
			return "", events.Token{}, err
		}
		id = u.String()
	}
	p, err := a.orders.Place(ctx, orders.PlaceOrder{OrderID: id, CustomerID: cmd.CustomerID, SKU: cmd.SKU, Qty: cmd.Qty, Card: cmd.Card})
	switch {
	case errors.Is(err, orders.ErrInvalidOrder):
		return "", events.Token{}, &ValidationError{Fields: []FieldError{{Field: "order", Message: err.Error()}}}
	case cmd.IdempotencyKey != "" && errors.Is(err, events.ErrDuplicateEvent):
		// The key's order is stored with other content.
		return "", events.Token{}, fmt.Errorf("%w: %w", ErrIdempotencyKeyReused, err)
	case err != nil:
		return "", events.Token{}, err
	}
	return p.OrderID, p.Token, nil
}

// Get reads an order's row from order_summary.
func (a *App) Get(ctx context.Context, id string) (OrderView, bool, error) {
	row, ok, err := a.summaries().GetRow(ctx, id)
	if err != nil || !ok {
		return OrderView{}, false, err
	}
	v, err := viewOf(row)
	return v, err == nil, err
}

// CheckCursor refuses, with ErrInvalidCursor, an after that List could
// never have returned as next: a cursor is an order id.
func (a *App) CheckCursor(after string) error {
	if after != "" && validateID(after) != nil {
		return ErrInvalidCursor
	}
	return nil
}

// List reads the customer's orders from the strong customer_orders (every
// order placed, in id order, which is placing order for orders placed
// without an Idempotency-Key) with each one's state
// from order_summary; an order the summary has not applied yet is listed
// as pending at the zero position.
func (a *App) List(ctx context.Context, customer string, page PageQuery) ([]OrderView, string, error) {
	if err := a.CheckCursor(page.After); err != nil {
		return nil, "", err
	}
	prefix := orders.CustomerOrderKey(customer, "")
	opts := &projections.ListOptions{Prefix: prefix, Limit: page.Limit + 1}
	if page.After != "" {
		opts.After = prefix + page.After
	}
	rows, err := a.Client().Projections().View(orders.CustomerOrders).Table(customerOrdersTable).List(ctx, opts)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(rows) > page.Limit {
		rows = rows[:page.Limit]
		next = strings.TrimPrefix(rows[len(rows)-1].Key, prefix)
	}
	out := make([]OrderView, 0, len(rows))
	for _, r := range rows {
		var co orders.CustomerOrder
		if err := r.Decode(&co); err != nil {
			return nil, "", fmt.Errorf("decode %s row: %w", orders.CustomerOrders, err)
		}
		v, found, err := a.Get(ctx, co.OrderID)
		if err != nil {
			return nil, "", err
		}
		if !found {
			v = OrderView{OrderID: co.OrderID, CustomerID: customer, AmountCents: co.Cents, Status: StatusPending}
		}
		out = append(out, v)
	}
	return out, next, nil
}

func (a *App) summaries() projections.Reader {
	return a.Client().Projections().View(orders.OrderSummary).Table(summaryTable)
}

// onUpdate turns committed order_summary rows into views for OnChange,
// then hands the update on to the configured Orders.OnUpdate.
func (a *App) onUpdate(u projections.Update) {
	if next := a.cfg.Orders.OnUpdate; next != nil {
		defer next(u)
	}
	if a.cfg.OnChange == nil || u.Projection != orders.OrderSummary || u.Table != summaryTable || u.Kind != projections.UpdatePut {
		return
	}
	v, err := viewOf(projections.Row{Key: u.Key, Value: u.Value, Token: u.Token})
	if err != nil {
		a.cfg.Logger.Error("web: undecodable order_summary row", "key", u.Key, "error", err)
		return
	}
	a.cfg.OnChange(v)
}

// viewOf maps an order_summary row onto the API's view: the statuses are
// the same three, the amount is the order's total in cents.
func viewOf(row projections.Row) (OrderView, error) {
	var s orders.Summary
	if err := row.Decode(&s); err != nil {
		return OrderView{}, fmt.Errorf("decode order_summary row: %w", err)
	}
	return OrderView{
		OrderID: s.OrderID, CustomerID: s.CustomerID, SKU: s.SKU, Qty: s.Qty, AmountCents: s.Cents,
		Status: s.Status, Reason: s.Reason, Position: row.Token,
	}, nil
}

// appOps is Ops over the client's saga engine and dead letters.
type appOps struct{ app *App }

func (o appOps) engine() *saga.Engine { return o.app.Client().Sagas() }

// every lists every fulfilment instance with status ("": any). The engine
// lists instances in id order and has no cursor: a cap would keep the
// oldest (order ids are time-ordered), and the counts and lists would
// freeze once the shop outgrew it. So every refresh reads them all, which
// suits an example shop; an installation with many more instances needs
// counts and a most-recently-updated order from the engine itself.
func (o appOps) every(ctx context.Context, status saga.Status) ([]saga.Info, error) {
	return o.engine().List(ctx, saga.Filter{Saga: orders.Fulfilment, Status: status, Limit: math.MaxInt})
}

func (o appOps) SagaCounts(ctx context.Context) (map[string]int, error) {
	infos, err := o.every(ctx, "")
	if err != nil {
		return nil, err
	}
	counts := map[string]int{}
	for _, in := range infos {
		counts[string(in.Status)]++
	}
	return counts, nil
}

func (o appOps) Sagas(ctx context.Context, f SagaFilter) ([]SagaSummary, error) {
	status := saga.Status(f.Status)
	if f.Stuck && status == "" {
		// Stuck instances are parked: the engine filters them.
		status = saga.StatusParked
	}
	infos, err := o.every(ctx, status)
	if err != nil {
		return nil, err
	}
	var out []SagaSummary
	for _, in := range infos {
		if !f.Stuck || in.Stuck {
			out = append(out, summaryOf(in))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].UpdatedAt.After(out[j].UpdatedAt) })
	if limit := cmp.Or(f.Limit, DefaultSagaLimit); len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// Saga ids are the fulfilment's instance ids, which are the order ids: the
// service runs that one saga type.
func (o appOps) Saga(ctx context.Context, id string) (SagaDetail, error) {
	if validateID(id) != nil {
		return SagaDetail{}, ErrSagaNotFound
	}
	tl, err := o.engine().Show(ctx, orders.Fulfilment, id)
	if err != nil {
		return SagaDetail{}, sagaErr(err)
	}
	d := SagaDetail{SagaSummary: summaryOf(tl.Info), Timeline: make([]TimelineEntry, 0, len(tl.History))}
	for _, h := range tl.History {
		detail := h.Detail
		if len(h.Models) > 0 {
			detail = strings.TrimSpace(detail + " (read models: " + strings.Join(h.Models, ", ") + ")")
		}
		d.Timeline = append(d.Timeline, TimelineEntry{At: h.At, Kind: h.Kind, Step: h.EventType, Detail: detail})
	}
	return d, nil
}

func (o appOps) Retry(ctx context.Context, id string) error {
	if validateID(id) != nil {
		return ErrSagaNotFound
	}
	return sagaErr(o.engine().Retry(ctx, orders.Fulfilment, id))
}

func (o appOps) Cancel(ctx context.Context, id string) error {
	if validateID(id) != nil {
		return ErrSagaNotFound
	}
	return sagaErr(o.engine().Cancel(ctx, orders.Fulfilment, id, "cancelled from the dashboard"))
}

// DeadLetters lists the read models' dead letters and the saga
// processor's, oldest first.
func (o appOps) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	client := o.app.Client()
	var out []DeadLetter
	for _, rm := range client.Catalog().ReadModels() {
		dls, err := client.Projections().DeadLetters(ctx, rm.Name)
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
	recs, err := client.SagaProcessor().DeadLetters(ctx, 0)
	if err != nil {
		return nil, err
	}
	for _, r := range recs {
		out = append(out, DeadLetter{
			ID: r.Checkpoint + "/" + r.Event.ID, Consumer: r.Checkpoint, EventID: r.Event.ID, EventType: r.Event.Type,
			StreamID: r.Event.StreamID, Position: r.Event.Token, Reason: r.Reason, Attempts: r.Attempts, At: r.At,
		})
	}
	slices.SortStableFunc(out, func(x, y DeadLetter) int { return x.At.Compare(y.At) })
	return out, nil
}

func summaryOf(in saga.Info) SagaSummary {
	s := SagaSummary{
		ID: in.ID, Type: in.Saga, Status: string(in.Status), Stuck: in.Stuck, Error: in.Reason,
		StartedAt: in.Created, UpdatedAt: in.Updated,
	}
	switch {
	case len(in.Waiting) > 0:
		s.Step = "waiting for " + strings.Join(in.Waiting, ", ")
	case !in.Timers["payment"].IsZero():
		s.Step = "waiting for the payment"
	}
	return s
}

// sagaErr maps the engine's errors onto the ones the API answers.
func sagaErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, saga.ErrNotFound):
		return fmt.Errorf("%w: %w", ErrSagaNotFound, err)
	case errors.Is(err, saga.ErrNotRetryable), errors.Is(err, saga.ErrEnded):
		return fmt.Errorf("%w: %w", ErrSagaConflict, err)
	}
	return err
}
