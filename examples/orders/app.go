package orders

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// Catalog is the shop's price list, in cents per unit.
var Catalog = map[string]int64{
	"tea": 450, "coffee": 1290, "mug": 890, "kettle": 3490, "grinder": 8900, "teapot": 2450,
}

// App is the order service: the converge client running the domain (read
// models, the fulfilment saga, the command handlers) and the operations a
// front end calls.
type App struct {
	cfg    Config
	client *converge.Client

	mu      sync.Mutex
	waiters map[string][]chan struct{}
}

// NewApp wires the domain on store (a *memstore.Store or a *pgstore.Store
// whose registry has the domain's types: NewRegistry). Start it to run.
func NewApp(store converge.Store, cfg *Config) (*App, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	a := &App{cfg: c, waiters: map[string][]chan struct{}{}}
	client, err := converge.NewClient(store, &converge.Config{
		Projections:          Projections(),
		Sagas:                []saga.Definition{a.fulfilment()},
		Commands:             CommandHandlers(store),
		Router:               c.Router,
		ProjectionMiddleware: []message.HandlerMiddleware{a.beforeApply},
		OnProjectionUpdate:   a.updated,
		SagaPartitions:       c.SagaPartitions,
		LagSLA:               c.LagSLA,
		LagInterval:          c.LagInterval,
		Registerer:           c.Registerer,
		Clock:                c.Clock,
		Logger:               c.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("orders: %w", err)
	}
	a.client = client
	return a, nil
}

// Start runs the app; Stop drains it (see converge.Client).
func (a *App) Start(ctx context.Context) error { return a.client.Start(ctx) }

// Stop drains and stops the app.
func (a *App) Stop(ctx context.Context) error { return a.client.Stop(ctx) }

// Client returns the converge client: its Tracker, saga operations,
// projections and lag monitor.
func (a *App) Client() *converge.Client { return a.client }

// placedNamespace derives OrderPlaced event ids from order ids.
var placedNamespace = uuid.MustParse("6f1c2b4e-6a0e-4f4b-9d3a-2c8a9e1b7d55")

// PlaceOrder is what a customer asks for.
type PlaceOrder struct {
	// OrderID makes placing idempotent: placing the same order again
	// returns the first result, and another order under the same id is
	// refused (events.ErrDuplicateEvent). Empty: a new id is chosen.
	// Otherwise 1 to MaxOrderIDLength bytes of the characters ValidID
	// accepts.
	OrderID string `json:"order_id,omitempty"`
	// CustomerID is 1 to MaxCustomerIDLength bytes of the characters
	// ValidID accepts.
	CustomerID string `json:"customer_id"`
	SKU        string `json:"sku"`
	Qty        int    `json:"qty"`
	// Card is the card number as the customer typed it (spaces or '-'
	// may separate its digits). Place tokenizes it and keeps only the
	// token and the last four digits (see Tokenize).
	Card string `json:"card"`
}

// Limits of ids. An order id is the fulfilment's instance id and is part
// of stream ids (the longest prefix is "payment-"); a customer id and an
// order id make a key of customer_orders (CustomerOrderKey).
const (
	MaxOrderIDLength    = min(events.MaxStreamIDLength-max(len(orderStreamPrefix), len(paymentStreamPrefix)), saga.MaxInstanceIDLength)
	MaxCustomerIDLength = projections.MaxKeyLength - len("/") - MaxOrderIDLength
)

// idPunctuation is what ids may hold besides letters and digits.
const idPunctuation = "-_.@+:"

// ValidID reports whether id is 1 to maxLen bytes of letters, digits and the
// characters - _ . @ + :. Nothing else: a '/' would make a customer's
// orders list another's (customer_orders keys are "customer/order"), and
// spaces and control characters make ids that look alike or that stream
// ids and keys refuse.
func ValidID(id string, maxLen int) bool {
	if id == "" || len(id) > maxLen || !utf8.ValidString(id) {
		return false
	}
	return strings.IndexFunc(id, func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r) && !strings.ContainsRune(idPunctuation, r)
	}) < 0
}

func idProblem(field, id string, maxLen int) string {
	if id == "" {
		return field + " is required"
	}
	return fmt.Sprintf("%s %.40q: use 1 to %d bytes of letters, digits and %q (no '/', spaces or control characters)", field, id, maxLen, idPunctuation)
}

// Placed is the answer to a PlaceOrder: the order id and the consistency
// token of the write. Wait on it before reading the order summary.
type Placed struct {
	OrderID string       `json:"order_id"`
	Cents   int64        `json:"cents"`
	Token   events.Token `json:"token"`
}

// validate returns the order's card digits, or ErrInvalidOrder naming
// every field at fault.
func (p PlaceOrder) validate() (string, error) {
	var problems []string
	if p.OrderID != "" && !ValidID(p.OrderID, MaxOrderIDLength) {
		problems = append(problems, idProblem("order_id", p.OrderID, MaxOrderIDLength))
	}
	if !ValidID(p.CustomerID, MaxCustomerIDLength) {
		problems = append(problems, idProblem("customer_id", p.CustomerID, MaxCustomerIDLength))
	}
	if _, ok := Catalog[p.SKU]; !ok {
		problems = append(problems, fmt.Sprintf("sku %q is not in the catalog", p.SKU))
	}
	if p.Qty < 1 || p.Qty > 100 {
		problems = append(problems, fmt.Sprintf("qty %d: order 1 to 100 units", p.Qty))
	}
	digits, err := NormalizeCard(p.Card)
	if err != nil {
		problems = append(problems, err.Error())
	}
	if len(problems) > 0 {
		return "", fmt.Errorf("%w: %s", ErrInvalidOrder, strings.Join(problems, "; "))
	}
	return digits, nil
}

// Place places an order: it appends OrderPlaced (through the client's
// Appender, so the strong customer_orders model has it when Place returns)
// and the fulfilment saga takes it from there. The card number goes no
// further than Place: the event holds its token (Tokenize).
func (a *App) Place(ctx context.Context, p PlaceOrder) (Placed, error) {
	digits, err := p.validate()
	if err != nil {
		return Placed{}, err
	}
	id := p.OrderID
	if id == "" {
		id = uuid.NewString()
	}
	card := tokenOf(id, digits)
	cents := Catalog[p.SKU] * int64(p.Qty)
	// The event's id derives from the order's, so placing the same order
	// again (a client retrying) is recognised by the store and answers the
	// first result; the same id with other content is refused.
	res, err := a.client.Appender().Append(ctx, OrderStream(id), events.NoStream, events.Event{
		ID: uuid.NewSHA1(placedNamespace, []byte(id)).String(),
		Data: OrderPlaced{
			OrderID: id, CustomerID: p.CustomerID, SKU: p.SKU, Qty: p.Qty, Cents: cents,
			CardToken: card.Token, CardLast4: card.Last4,
		},
		Metadata: events.Metadata{CorrelationID: id},
	})
	if err != nil {
		return Placed{}, fmt.Errorf("orders: place %s: %w", id, err)
	}
	return Placed{OrderID: id, Cents: cents, Token: res.Token}, nil
}

// OnHand returns how many units of sku are on the shelf, not reserved.
func (a *App) OnHand(ctx context.Context, sku string) (int, error) {
	inv, _, err := events.Load(ctx, a.client.Store(), inventoryAggregate, StockStream(sku))
	return inv.OnHand, err
}

// MaxOnHand is the most units of one SKU Restock puts on the shelf: it
// refuses a restock that would leave more than that on hand. The shelf's
// count is an int, and an unbounded restock wrapped it to a negative that
// refused every reservation; under the bound it cannot come near
// overflowing (on 32-bit platforms too), and the Inventory aggregate
// saturates rather than wraps should a stream hold more. It is far above
// what `converge serve` (1,000,000) and the demo (100 per order, at most
// 100×MaxDemoOrders) stock.
const MaxOnHand = 1_000_000_000

// restockAttempts is how often Restock reloads the shelf when a
// reservation moved it between the load and the append.
const restockAttempts = 10

// Restock puts qty units of sku on the shelf, 1 up to what leaves
// MaxOnHand on hand; more is ErrInvalidOrder.
func (a *App) Restock(ctx context.Context, sku string, qty int) (events.Token, error) {
	if _, ok := Catalog[sku]; !ok {
		return events.Token{}, fmt.Errorf("%w: restock %q: not in the catalog", ErrInvalidOrder, sku)
	}
	if qty < 1 || qty > MaxOnHand {
		return events.Token{}, fmt.Errorf("%w: restock %d of %s: restock 1 to %d units (MaxOnHand)", ErrInvalidOrder, qty, sku, MaxOnHand)
	}
	// The bound holds for the shelf the append is based on (Update
	// appends at the loaded version): two restocks at once cannot each
	// fit under it and pass it together.
	res, err := events.Update(ctx, a.client.Appender(), inventoryAggregate, StockStream(sku), &events.UpdateConfig{MaxAttempts: restockAttempts},
		func(inv Inventory) ([]events.Event, error) {
			if room := MaxOnHand - inv.OnHand; qty > room {
				return nil, fmt.Errorf("%w: restock %d of %s: %d are on hand and a shelf holds at most %d (MaxOnHand): restock at most %d",
					ErrInvalidOrder, qty, sku, inv.OnHand, MaxOnHand, max(room, 0))
			}
			return []events.Event{{Data: StockAdded{SKU: sku, Qty: qty}}}, nil
		})
	return res.Token, err
}

// Get reads an order's summary as of tok (the zero token: as it is),
// waiting for order_summary to reach tok within ctx's deadline (see
// consistency.Read). A stale result is returned with Stale set; an order
// the summary does not have yet is ErrNotFound with the status, and so is
// an id no order can have (one ValidID refuses), without reading.
func (a *App) Get(ctx context.Context, orderID string, tok events.Token) (consistency.Result[Summary], error) {
	view := a.client.Projections().View(OrderSummary)
	res, err := consistency.Read(ctx, a.client.Tracker(), tok, []string{OrderSummary}, func(ctx context.Context) (Summary, error) {
		if !ValidID(orderID, MaxOrderIDLength) {
			// No order has such an id (Place refuses it), and the table
			// would refuse it as a key rather than answer "none".
			return Summary{}, ErrNotFound
		}
		s, ok, err := projections.Get[Summary](context.WithoutCancel(ctx), view.Table("orders"), orderID)
		if err == nil && !ok {
			err = ErrNotFound
		}
		return s, err
	})
	return res, err
}

// List returns a customer's orders, as the strong customer_orders model
// has them (every order placed so far), after the order id after, up to
// limit; each with its status from the order summary (pending while the
// summary has not caught up). A customer id Place refuses has no orders.
func (a *App) List(ctx context.Context, customerID, after string, limit int) ([]Summary, error) {
	if !ValidID(customerID, MaxCustomerIDLength) {
		return nil, nil
	}
	prefix := CustomerOrderKey(customerID, "")
	opts := &projections.ListOptions{Prefix: prefix, Limit: limit}
	if after != "" {
		opts.After = prefix + after
	}
	rows, err := a.client.Projections().View(CustomerOrders).Table("orders").List(ctx, opts)
	if err != nil {
		return nil, err
	}
	summaries := a.client.Projections().View(OrderSummary).Table("orders")
	out := make([]Summary, 0, len(rows))
	for _, r := range rows {
		var co CustomerOrder
		if err := r.Decode(&co); err != nil {
			return nil, err
		}
		s, ok, err := projections.Get[Summary](ctx, summaries, co.OrderID)
		if err != nil {
			return nil, err
		}
		if !ok {
			s = Summary{OrderID: co.OrderID, CustomerID: customerID, Cents: co.Cents, Status: StatusPending}
		}
		out = append(out, s)
	}
	return out, nil
}

// Await waits until the order summary shows the order closed (confirmed or
// cancelled), pushed by the read model's updates, and returns it.
func (a *App) Await(ctx context.Context, orderID string) (Summary, error) {
	view := a.client.Projections().View(OrderSummary).Table("orders")
	for {
		// Watch before reading: an update between the read and the wait
		// still wakes it.
		ch := a.watch(orderID)
		s, ok, err := projections.Get[Summary](ctx, view, orderID)
		if err != nil {
			a.unwatch(orderID, ch)
			return Summary{}, err
		}
		if ok && s.Terminal() {
			a.unwatch(orderID, ch)
			return s, nil
		}
		select {
		case <-ch: // updated closed and removed it
		case <-ctx.Done():
			a.unwatch(orderID, ch)
			return s, fmt.Errorf("orders: order %s is still %q: %w", orderID, s.Status, ctx.Err())
		}
	}
}

// watch registers a channel that updated closes when the order's summary
// row changes.
func (a *App) watch(orderID string) chan struct{} {
	ch := make(chan struct{})
	a.mu.Lock()
	defer a.mu.Unlock()
	a.waiters[orderID] = append(a.waiters[orderID], ch)
	return ch
}

// unwatch removes ch, when updated has not: every Await that returns
// leaves nothing registered.
func (a *App) unwatch(orderID string, ch chan struct{}) {
	a.mu.Lock()
	defer a.mu.Unlock()
	chs := slices.DeleteFunc(a.waiters[orderID], func(c chan struct{}) bool { return c == ch })
	if len(chs) == 0 {
		delete(a.waiters, orderID)
	} else {
		a.waiters[orderID] = chs
	}
}

// updated wakes the Await calls of an order whose summary row changed,
// then hands the update to Config.OnUpdate.
func (a *App) updated(u projections.Update) {
	if a.cfg.OnUpdate != nil {
		defer a.cfg.OnUpdate(u)
	}
	if u.Projection != OrderSummary || u.Table != "orders" {
		if u.Kind != projections.UpdateReplaced {
			return
		}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if u.Kind == projections.UpdateReplaced {
		for id, chs := range a.waiters {
			for _, ch := range chs {
				close(ch)
			}
			delete(a.waiters, id)
		}
		return
	}
	for _, ch := range a.waiters[u.Key] {
		close(ch)
	}
	delete(a.waiters, u.Key)
}

// beforeApply runs Config.BeforeApply ahead of each read model's handler,
// at the head of a unit: behind it, the unit's transaction is open, and a
// wait there would hold back every consumer of the database.
func (a *App) beforeApply(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		if a.cfg.BeforeApply != nil {
			if feed.UnitIndex(msg.Context()) > 0 {
				return nil, feed.ErrCut
			}
			env, err := feed.EnvelopeFromMessage(msg)
			if err != nil {
				return nil, err
			}
			if err := a.cfg.BeforeApply(msg.Context(), message.HandlerNameFromCtx(msg.Context()), env); err != nil {
				return nil, err
			}
		}
		return h(msg)
	}
}
