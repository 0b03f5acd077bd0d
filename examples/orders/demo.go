package orders

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
	"github.com/converge-es/converge/saga"
)

// Defaults of DemoConfig.
const (
	DefaultDemoOrders    = 200
	DefaultDemoCustomers = 20
	DefaultDemoLag       = 100 * time.Millisecond
	// DefaultDemoPaymentTimeout is the saga's payment timeout in the demo.
	DefaultDemoPaymentTimeout = 500 * time.Millisecond
	// DefaultDemoCreditLimitCents is low enough that busy customers hit it.
	DefaultDemoCreditLimitCents = 50_000
	// DefaultDemoSettleTimeout is how long a simulated customer waits for
	// an order to settle.
	DefaultDemoSettleTimeout = 2 * time.Minute
	// MaxDemoLag is the largest DemoConfig.Lag. A quarter of the orders
	// reach order_summary up to 2×Lag late and one in 40 stalls for 8×Lag,
	// and the stalls queue one behind another on its one partition: at
	// 1s the default run took about three minutes (same outcomes), at 10s
	// it outlasted the DefaultDemoSettleTimeout a customer waits for its
	// order and failed by construction (and a huge Lag overflowed 8×Lag
	// into a stall that never happened).
	MaxDemoLag = time.Second
	// MaxDemoOrders is the largest DemoConfig.Orders: the run plans every
	// order in memory up front and stocks 100 items per order.
	MaxDemoOrders = 1_000_000
	// SoldOutSKU is never stocked in the demo.
	SoldOutSKU = "teapot"
)

// ErrDemoFailed is returned by RunDemo when a saga did not end or a read
// model differs from a clean rebuild; the summary says which.
var ErrDemoFailed = errors.New("orders: demo invariants violated")

// DemoConfig configures RunDemo. The zero value (or nil) is ready to use.
type DemoConfig struct {
	// Orders is how many orders are placed. Defaults to DefaultDemoOrders.
	Orders int
	// Customers is how many simulated customers place them concurrently,
	// each waiting for its order to close before placing the next.
	// Defaults to DefaultDemoCustomers.
	Customers int
	// Seed makes the run repeatable: the same seed places the same orders
	// with the same outcomes. Every value is a seed, 0 too: the zero
	// value runs seed 0 (`converge demo` runs seed 1 unless --seed says
	// otherwise).
	Seed uint64
	// Lag is the projection lag injected into order_summary (the model the
	// saga's credit check reads): a quarter of placed orders reach it up
	// to 2×Lag late, and one in 40 stalls for 8×Lag, long enough to park
	// the step. Negative: none; at most MaxDemoLag. Defaults to
	// DefaultDemoLag.
	Lag time.Duration
	// DeclineRate, NoAnswerRate and SoldOutRate are the shares of orders
	// paid with a declined card, with a card the gateway never answers,
	// and for the sold-out SKU. Defaults to 0.1, 0.05 and 0.08; negative:
	// none.
	DeclineRate, NoAnswerRate, SoldOutRate float64
	// PaymentTimeout defaults to DefaultDemoPaymentTimeout.
	PaymentTimeout time.Duration
	// CreditLimitCents defaults to DefaultDemoCreditLimitCents.
	CreditLimitCents int64
	// Out receives progress and the summary. Defaults to io.Discard.
	Out io.Writer
	// Bar draws a progress bar (on a terminal); otherwise progress is
	// printed as plain lines. Defaults to false.
	Bar bool
	// SettleTimeout is how long a simulated customer waits for an order's
	// status to become final before going on without it; its saga is
	// then reported in the summary as not ended, and RunDemo fails.
	// Defaults to DefaultDemoSettleTimeout.
	SettleTimeout time.Duration
	// QuiesceTimeout is how long the run waits, once the customers are
	// done, for every consumer to catch up with the feed; those still
	// behind then are listed in the summary (DemoSummary.Behind), and
	// RunDemo fails. Defaults to a minute plus 16×Lag.
	QuiesceTimeout time.Duration
	// Logger defaults to a discarding logger.
	Logger *slog.Logger
}

func (c *DemoConfig) withDefaults() DemoConfig {
	var out DemoConfig
	if c != nil {
		out = *c
	}
	out.Orders = cmp.Or(out.Orders, DefaultDemoOrders)
	out.Customers = cmp.Or(out.Customers, DefaultDemoCustomers)
	out.Lag = cmp.Or(out.Lag, DefaultDemoLag)
	out.DeclineRate = cmp.Or(out.DeclineRate, 0.1)
	out.NoAnswerRate = cmp.Or(out.NoAnswerRate, 0.05)
	out.SoldOutRate = cmp.Or(out.SoldOutRate, 0.08)
	for _, r := range []*float64{&out.DeclineRate, &out.NoAnswerRate, &out.SoldOutRate} {
		*r = max(*r, 0) // negative: none, as Lag's
	}
	out.PaymentTimeout = cmp.Or(out.PaymentTimeout, DefaultDemoPaymentTimeout)
	out.CreditLimitCents = cmp.Or(out.CreditLimitCents, DefaultDemoCreditLimitCents)
	out.SettleTimeout = cmp.Or(out.SettleTimeout, DefaultDemoSettleTimeout)
	out.QuiesceTimeout = cmp.Or(out.QuiesceTimeout, time.Minute+16*max(out.Lag, 0))
	if out.Out == nil {
		out.Out = io.Discard
	}
	if out.Logger == nil {
		out.Logger = slog.New(slog.DiscardHandler)
	}
	return out
}

func (c *DemoConfig) validate() error {
	switch {
	case c.Orders < 1 || c.Orders > MaxDemoOrders:
		return fmt.Errorf("orders: DemoConfig.Orders is %d: place 1 to %d", c.Orders, MaxDemoOrders)
	case c.Lag > MaxDemoLag:
		return fmt.Errorf("orders: DemoConfig.Lag is %s: use at most %s (one order in 40 stalls for 8×Lag, and a customer waits %s for its order)", c.Lag, MaxDemoLag, DefaultDemoSettleTimeout)
	case c.Customers < 1:
		return fmt.Errorf("orders: DemoConfig.Customers is %d: use at least 1", c.Customers)
	case c.SettleTimeout < 0:
		return fmt.Errorf("orders: DemoConfig.SettleTimeout is %s: use a positive duration", c.SettleTimeout)
	case c.DeclineRate+c.NoAnswerRate > 1, c.SoldOutRate > 1:
		return errors.New("orders: DemoConfig rates must be shares of at most 1 (and declines plus no-answers at most 1; negative for none)")
	}
	return nil
}

// DemoSummary is what a demo run ended with.
type DemoSummary struct {
	Orders int `json:"orders"`
	// Outcomes of the sagas.
	Completed     int `json:"completed"`
	Declined      int `json:"declined"`
	OutOfStock    int `json:"out_of_stock"`
	CreditRefused int `json:"credit_refused"`
	TimedOut      int `json:"timed_out"`
	// NotEnded lists orders whose saga did not reach a terminal state.
	NotEnded []string `json:"not_ended,omitempty"`
	// Parked counts steps parked waiting for their read model, and
	// ParkedP99 is the 99th percentile of how long they waited.
	Parked    int           `json:"parked"`
	ParkedP99 time.Duration `json:"parked_p99"`
	// Gated counts steps that read a read model; StaleAvoided those whose
	// read model was behind when the step arrived (they waited or parked
	// instead of deciding on old data).
	Gated        int64 `json:"gated"`
	StaleAvoided int64 `json:"stale_avoided"`
	// Mismatches lists read-model rows that differ from a clean rebuild.
	Mismatches []string `json:"mismatches,omitempty"`
	// Ledgers lists where money or stock disagrees with the orders'
	// outcomes (see checkLedgers).
	Ledgers []string `json:"ledgers,omitempty"`
	// Behind lists the consumers that had not caught up with the feed when
	// the run gave up waiting for them (read models and money are then not
	// compared: they would differ for that reason alone).
	Behind   []string      `json:"behind,omitempty"`
	Duration time.Duration `json:"duration"`
}

// Compensated is how many orders were cancelled after a step had an
// effect to undo or refuse: declines, sold-out stock and credit refusals.
func (s DemoSummary) Compensated() int { return s.Declined + s.OutOfStock + s.CreditRefused }

// OK reports whether every saga ended and every read model equals a clean
// rebuild.
func (s DemoSummary) OK() bool {
	return len(s.NotEnded) == 0 && len(s.Mismatches) == 0 && len(s.Ledgers) == 0 && len(s.Behind) == 0
}

// Outcomes returns the outcome counts, which depend only on the seed.
func (s DemoSummary) Outcomes() map[string]int {
	return map[string]int{
		OutcomeConfirmed: s.Completed, OutcomeDeclined: s.Declined, OutcomeOutOfStock: s.OutOfStock,
		OutcomeCreditRefused: s.CreditRefused, OutcomeTimedOut: s.TimedOut,
	}
}

// plan draws every order from the seed: what is ordered and how it is
// paid. Outcomes follow from it alone, because each customer places its
// orders one after another.
func plan(c DemoConfig) [][]PlaceOrder {
	rng := rand.New(rand.NewPCG(c.Seed, c.Seed^0x9e3779b97f4a7c15))
	stocked := []string{"coffee", "grinder", "kettle", "mug", "tea"}
	out := make([][]PlaceOrder, c.Customers)
	for i := range c.Orders {
		cust := i % c.Customers
		sku := stocked[rng.IntN(len(stocked))]
		if rng.Float64() < c.SoldOutRate {
			sku = SoldOutSKU
		}
		card := CardOK
		switch r := rng.Float64(); {
		case r < c.DeclineRate:
			card = CardDeclined
		case r < c.DeclineRate+c.NoAnswerRate:
			card = CardNoAnswer
		}
		out[cust] = append(out[cust], PlaceOrder{
			OrderID: fmt.Sprintf("o-%05d", i), CustomerID: fmt.Sprintf("customer-%03d", cust),
			SKU: sku, Qty: 1 + rng.IntN(3), Card: card,
		})
	}
	return out
}

// lagger injects order_summary's lag. Its randomness only shapes timing,
// never outcomes, so it has its own generator.
type lagger struct {
	lag time.Duration
	mu  sync.Mutex
	rng *rand.Rand
	n   int
}

// delay draws how long the next placed order reaches order_summary late
// (DemoConfig.Lag): a quarter of them up to 2×lag, and every 40th 8×lag.
func (l *lagger) delay() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.n++
	switch {
	case l.n%40 == 0:
		return 8 * l.lag
	case l.rng.Float64() < 0.25:
		return time.Duration(l.rng.Int64N(int64(2 * l.lag)))
	}
	return 0
}

func (l *lagger) before(ctx context.Context, model string, env events.Envelope) error {
	if l.lag <= 0 || model != OrderSummary || !strings.HasPrefix(env.StreamID, "order-") || env.Version != 1 {
		return nil
	}
	d := l.delay()
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// RunDemo runs the order workflow on store (a fresh one: the demo counts
// what it finds): simulated customers place orders concurrently while
// order_summary lags on purpose; then it checks that every saga ended and
// that every read model equals a clean rebuild from the events. It returns
// the summary, and ErrDemoFailed when an invariant does not hold.
func RunDemo(ctx context.Context, store converge.Store, cfg *DemoConfig) (DemoSummary, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return DemoSummary{}, err
	}
	lag := &lagger{lag: c.Lag, rng: rand.New(rand.NewPCG(c.Seed, 42))}
	app, err := NewApp(store, &Config{
		CreditLimitCents: c.CreditLimitCents, PaymentTimeout: c.PaymentTimeout,
		BeforeApply: lag.before, Logger: c.Logger,
	})
	if err != nil {
		return DemoSummary{}, err
	}
	if err := app.Start(ctx); err != nil {
		return DemoSummary{}, err
	}
	defer func() { _ = app.Stop(context.WithoutCancel(ctx)) }()
	for _, sku := range []string{"coffee", "grinder", "kettle", "mug", "tea"} {
		if _, err := app.Restock(ctx, sku, 100*c.Orders); err != nil {
			return DemoSummary{}, err
		}
	}

	lagNote := "no injected lag"
	if c.Lag > 0 {
		lagNote = fmt.Sprintf("order_summary lagging up to %s", 8*c.Lag)
	}
	fmt.Fprintf(c.Out, "converge demo: %d orders from %d customers (seed %d), %s\n", c.Orders, c.Customers, c.Seed, lagNote)
	start := time.Now()
	var closed atomic.Int64
	prog := newProgress(c.Out, c.Bar, c.Orders)
	stopProg := prog.run(&closed)
	errs := make(chan error, c.Customers)
	var wg sync.WaitGroup
	for _, orders := range plan(c) {
		wg.Go(func() {
			for _, o := range orders {
				if _, err := app.Place(ctx, o); err != nil {
					errs <- err
					return
				}
				actx, cancel := context.WithTimeout(ctx, c.SettleTimeout)
				_, err := app.Await(actx, o.OrderID)
				cancel()
				switch {
				case err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
					// The order did not settle: the summary's count of
					// sagas that did not end says so, and the customer
					// goes on with the next one.
				case err != nil:
					errs <- err
					return
				}
				closed.Add(1)
			}
		})
	}
	wg.Wait()
	stopProg()
	close(errs)
	if err := errors.Join(slices.Collect(chanSeq(errs))...); err != nil {
		return DemoSummary{}, err
	}
	behind, err := quiesce(ctx, store, c.QuiesceTimeout)
	if err != nil {
		return DemoSummary{}, err
	}
	sum := DemoSummary{Orders: c.Orders, Duration: time.Since(start), Behind: behind}
	if err := sum.countSagas(ctx, app, c.Orders); err != nil {
		return sum, err
	}
	gs := app.Client().GateStats()
	sum.Gated, sum.StaleAvoided = gs.Gated, gs.Behind
	if len(behind) > 0 {
		// Read models and money would differ for that reason alone.
		sum.print(c.Out)
		return sum, ErrDemoFailed
	}
	sum.Mismatches, err = compareWithRebuild(ctx, store, app, Projections())
	if err != nil {
		return sum, err
	}
	if len(sum.NotEnded) == 0 {
		// Money and stock settle only once every saga has ended.
		if sum.Ledgers, err = checkLedgers(ctx, store, app); err != nil {
			return sum, err
		}
	}
	sum.print(c.Out)
	if !sum.OK() {
		return sum, ErrDemoFailed
	}
	return sum, nil
}

func chanSeq(ch <-chan error) func(func(error) bool) {
	return func(yield func(error) bool) {
		for e := range ch {
			if !yield(e) {
				return
			}
		}
	}
}

// quiesce waits until every consumer has consumed the whole feed and the
// head stopped moving: the compensations sent by the last steps have been
// handled and every read model has applied them. It gives up after wait
// and returns the consumers still behind then (for the summary), and an
// error only when it cannot read the store or ctx ends.
func quiesce(ctx context.Context, store converge.Store, wait time.Duration) ([]string, error) {
	deadline := time.Now().Add(wait)
	for {
		head, err := store.Head(ctx)
		if err != nil {
			return nil, err
		}
		cs, err := store.Consumers(ctx)
		if err != nil {
			return nil, err
		}
		var behind []string
		for _, ci := range cs {
			if ci.Position.Before(head) {
				behind = append(behind, fmt.Sprintf("%s (at %s, the feed at %s)", ci.Name, ci.Position, head))
			}
		}
		if again, err := store.Head(ctx); err == nil && len(behind) == 0 && again == head {
			return nil, nil
		}
		if time.Now().After(deadline) {
			return behind, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// countSagas reads every fulfilment's outcome and its parks.
func (s *DemoSummary) countSagas(ctx context.Context, app *App, n int) error {
	infos, err := app.Client().Sagas().List(ctx, saga.Filter{Saga: Fulfilment, Limit: n + 1})
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var parks []time.Duration
	for _, in := range infos {
		seen[in.ID] = true
		var st FulfilmentState
		if err := json.Unmarshal(in.State, &st); err != nil {
			return fmt.Errorf("orders: state of %s: %w", in.ID, err)
		}
		ended := in.Status == saga.StatusCompleted || in.Status == saga.StatusFailed && st.Outcome != ""
		switch {
		case !ended:
			s.NotEnded = append(s.NotEnded, in.ID+" ("+string(in.Status)+")")
		case st.Outcome == OutcomeConfirmed:
			s.Completed++
		case st.Outcome == OutcomeDeclined:
			s.Declined++
		case st.Outcome == OutcomeOutOfStock:
			s.OutOfStock++
		case st.Outcome == OutcomeCreditRefused:
			s.CreditRefused++
		case st.Outcome == OutcomeTimedOut:
			s.TimedOut++
		}
		tl, err := app.Client().Sagas().Show(ctx, Fulfilment, in.ID)
		if err != nil {
			return err
		}
		var since time.Time
		for _, h := range tl.History {
			switch h.Kind {
			case saga.KindParked:
				since = h.At
			case saga.KindResumed:
				if !since.IsZero() {
					parks = append(parks, h.At.Sub(since))
					since = time.Time{}
				}
			}
		}
	}
	for i := range n {
		if id := fmt.Sprintf("o-%05d", i); !seen[id] {
			s.NotEnded = append(s.NotEnded, id+" (no saga)")
		}
	}
	s.Parked = len(parks)
	if len(parks) > 0 {
		slices.Sort(parks)
		s.ParkedP99 = parks[min(len(parks)-1, len(parks)*99/100)]
	}
	return nil
}

// compareWithRebuild replays every event into a fresh in-memory store,
// runs the read models (defs) there from scratch, and returns every row
// where the live read models differ from that clean rebuild.
func compareWithRebuild(ctx context.Context, store converge.Store, app *App, defs []*projections.Projection) ([]string, error) {
	fresh, err := memstore.New(&memstore.Config{Registry: NewRegistry()})
	if err != nil {
		return nil, err
	}
	defer fresh.Close()
	var after events.Token
	for {
		envs, err := store.ReadAll(ctx, after, 1000)
		if err != nil {
			return nil, err
		}
		if len(envs) == 0 {
			break
		}
		for _, e := range envs {
			raw := events.Raw{Type: e.Type, SchemaVersion: e.SchemaVersion, Payload: e.Payload}
			// The live store marks events a strong projection applied in
			// their append; the rebuild applies every event from the feed,
			// so the copies go without the mark.
			md := e.Metadata
			if _, marked := md.Extra[projections.AppliedMetadataKey]; marked {
				md.Extra = maps.Clone(md.Extra)
				delete(md.Extra, projections.AppliedMetadataKey)
			}
			if _, err := fresh.Append(ctx, e.StreamID, events.AnyVersion, events.Event{ID: e.ID, Data: raw, Metadata: md}); err != nil {
				return nil, fmt.Errorf("orders: replay %s: %w", e.ID, err)
			}
			after = e.Token
		}
	}
	rebuilt, err := converge.NewClient(fresh, &converge.Config{Projections: defs, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, err
	}
	if err := rebuilt.Start(ctx); err != nil {
		return nil, err
	}
	defer func() { _ = rebuilt.Stop(context.WithoutCancel(ctx)) }()
	head, err := fresh.Head(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(Tables))
	for n := range Tables {
		names = append(names, n)
	}
	slices.Sort(names)
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := rebuilt.Tracker().Wait(wctx, head, names...)
	if err != nil {
		return nil, fmt.Errorf("orders: wait for the rebuild: %w", err)
	}
	if st.Stale {
		return nil, fmt.Errorf("orders: the rebuild did not catch up with the replayed events (%v behind)", st.Lagging)
	}
	var diffs []string
	for _, name := range names {
		for _, table := range Tables[name] {
			live, err := typedRows[any](ctx, app.Client().Projections().View(name).Table(table))
			if err != nil {
				return nil, err
			}
			want, err := typedRows[any](ctx, rebuilt.Projections().View(name).Table(table))
			if err != nil {
				return nil, err
			}
			for k, v := range want {
				if !reflect.DeepEqual(live[k], v) {
					diffs = append(diffs, fmt.Sprintf("%s.%s[%s]: live %v, rebuilt %v", name, table, k, live[k], v))
				}
			}
			for k, v := range live {
				if _, ok := want[k]; !ok {
					diffs = append(diffs, fmt.Sprintf("%s.%s[%s]: live %v, not in the rebuild", name, table, k, v))
				}
			}
		}
	}
	slices.Sort(diffs)
	return diffs, nil
}

func (s DemoSummary) print(w io.Writer) {
	fmt.Fprintf(w, "\nSummary (%d orders in %s)\n", s.Orders, s.Duration.Round(time.Millisecond))
	fmt.Fprintf(w, "  completed                %5d\n", s.Completed)
	fmt.Fprintf(w, "  compensated              %5d  (declined %d, out of stock %d, over credit limit %d)\n", s.Compensated(), s.Declined, s.OutOfStock, s.CreditRefused)
	fmt.Fprintf(w, "  timed out                %5d\n", s.TimedOut)
	fmt.Fprintf(w, "  parked steps             %5d  (wait p99 %s)\n", s.Parked, s.ParkedP99.Round(time.Millisecond))
	fmt.Fprintf(w, "  stale decisions avoided  %5d  of %d gated steps\n", s.StaleAvoided, s.Gated)
	if len(s.NotEnded) > 0 {
		fmt.Fprintf(w, "  NOT ENDED                %5d  %s\n", len(s.NotEnded), strings.Join(s.NotEnded[:min(len(s.NotEnded), 10)], ", "))
	} else {
		fmt.Fprintf(w, "  every saga reached a terminal state\n")
	}
	if len(s.Behind) > 0 {
		fmt.Fprintf(w, "  CONSUMERS BEHIND the feed when the run stopped waiting (read models and money not compared):\n")
		for _, b := range s.Behind[:min(len(s.Behind), 10)] {
			fmt.Fprintf(w, "    %s\n", b)
		}
		return
	}
	if len(s.Mismatches) > 0 {
		fmt.Fprintf(w, "  READ MODELS DIFFER from a clean rebuild in %d rows:\n", len(s.Mismatches))
		for _, m := range s.Mismatches[:min(len(s.Mismatches), 10)] {
			fmt.Fprintf(w, "    %s\n", m)
		}
	} else {
		fmt.Fprintf(w, "  every read model equals a clean rebuild from the events\n")
	}
	switch {
	case len(s.Ledgers) > 0:
		fmt.Fprintf(w, "  MONEY OR STOCK DISAGREE with the orders in %d places:\n", len(s.Ledgers))
		for _, m := range s.Ledgers[:min(len(s.Ledgers), 10)] {
			fmt.Fprintf(w, "    %s\n", m)
		}
	case len(s.NotEnded) == 0:
		fmt.Fprintf(w, "  money and stock match the confirmed orders\n")
	}
}
