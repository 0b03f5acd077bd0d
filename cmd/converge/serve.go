package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/examples/orders/web"
	"github.com/converge-es/converge/migrations"
)

// defaultShutdownTimeout is --shutdown-timeout unless given: how long
// serve, asked to stop, waits for requests in flight, the workflow and
// its database connections to stop, all told.
const defaultShutdownTimeout = 15 * time.Second

// serveCmd is `converge serve`: the order workflow behind its HTTP API,
// page and dashboard, with the operations endpoints.
type serveCmd struct {
	db       *dbOptions
	postgres bool
	listen   string
	sla      time.Duration
	interval time.Duration
	demoLoad float64
	origins  []string
	hosts    []string
	// shutdownTimeout bounds the whole stop (--shutdown-timeout).
	shutdownTimeout time.Duration
}

func (c *serveCmd) validate() error {
	if _, _, err := allowedHosts(c.hosts); err != nil {
		return err
	}
	if _, _, err := net.SplitHostPort(c.listen); err != nil {
		return fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:9090: %w", c.listen, err)
	}
	if err := checkOrigins(c.origins); err != nil {
		return err
	}
	switch {
	case c.sla <= 0:
		return fmt.Errorf("--sla %s: use a positive duration such as 2s", c.sla)
	case c.shutdownTimeout <= 0:
		return fmt.Errorf("--shutdown-timeout %s: use a positive duration such as 15s", c.shutdownTimeout)
	case c.interval < minLagInterval:
		return fmt.Errorf("--interval %s: use an interval of at least %s, such as 1s: a shorter one only loads the machine (and the database with --postgres)", c.interval, minLagInterval)
	case !(c.demoLoad == 0 || c.demoLoad >= web.MinLoadRate && c.demoLoad <= 1000): // NaN too
		return fmt.Errorf("--demo-load %g: use orders per second from %g to 1000, or 0 (off)", c.demoLoad, web.MinLoadRate)
	}
	return nil
}

func newServeCmd() *cobra.Command {
	c := &serveCmd{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the order workflow: its API, web page and dashboard, with /metrics, /lag and /healthz",
		Long: `serve runs the order workflow of examples/orders in process and serves:

  /               the order page: place an order, watch it go from pending
                  to confirmed or cancelled
  /dashboard      sagas, stuck and failed instances, each projection's lag
                  against its SLA over the last minutes, dead letters
  /orders         the JSON API (POST /orders, GET /orders/{id} with the
                  X-Consistency-Position token, GET /orders?customer=ID)
  /live/orders    WebSocket of order updates
  /read-models    the read models and their consistency
  /metrics        Prometheus metrics: the read models' lag (converge_projection_*),
                  the saga engine's (converge_saga_*) and Go's
  /lag            the last lag reports as a JSON array
  /healthz        200 while the last lag pass succeeded, less than three
                  --interval ago, and no projection, saga partition or
                  command handler breaches its SLA, 503 otherwise (and
                  before any pass has completed)

Orders go through the fulfilment saga (credit check, stock, payment,
confirmation); every product starts with plenty of stock. It runs in memory
unless --postgres or --database-url is given; then it runs on PostgreSQL in
--schema, migrating it first. Each read model's SLA is the one its
projection declares; --sla applies to read models that declare none.

It binds 127.0.0.1 unless told otherwise, prints "listening on ADDR" once it
accepts connections, and stops gracefully on SIGINT or SIGTERM, within
--shutdown-timeout (15s by default): requests in flight, live page
connections, the workflow and its database connections together. What
has not stopped by then (with PostgreSQL not answering, or a page that
never reads its connection, say) is logged, and serve exits with status 1
without waiting for it.

On a loopback address (however --listen names it) it answers only
requests for loopback names (localhost and its subdomains, 127.0.0.0/8,
[::1]; 403 otherwise), so a web page whose name an attacker points at
127.0.0.1 (DNS rebinding) cannot use it; --allow-host adds names. On any
other address every name is served unless --allow-host lists them.`,
		Example: `  converge serve                        # in memory; open http://127.0.0.1:9090/
  converge serve --demo-load 5          # with 5 simulated orders a second
  converge serve --database-url postgres://postgres@127.0.0.1:5432/app`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := c.validate(); err != nil {
				return err
			}
			if f := cmd.Flag(flagDatabaseURL); f != nil && f.Changed {
				c.postgres = true
			}
			if !c.postgres && cmd.Flags().Changed(flagSchema) {
				// In memory there is no schema: a user who named one meant
				// PostgreSQL.
				return fmt.Errorf("--%s applies on PostgreSQL only (serve runs in memory by default): add --database-url URL, or --postgres with DATABASE_URL set, or leave --%s out", flagSchema, flagSchema)
			}
			if c.postgres {
				db, err := dbOptionsFrom(cmd)
				if err != nil {
					return err
				}
				c.db = db
			}
			return c.run(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&c.listen, "listen", "127.0.0.1:9090", "address to serve on")
	f.BoolVar(&c.postgres, "postgres", false, "run on PostgreSQL (--database-url, else DATABASE_URL) instead of in memory")
	f.DurationVar(&c.sla, "sla", lag.UserFacingSLA, "SLA of read models that declare none (the strong customer_orders)")
	f.DurationVar(&c.interval, "interval", lag.DefaultInterval, "how often lag is sampled (at least "+minLagInterval.String()+")")
	f.Float64Var(&c.demoLoad, "demo-load", 0, "place this many simulated orders a second (from "+strconv.FormatFloat(web.MinLoadRate, 'g', -1, 64)+" to 1000), from new customers who buy a few times each (0: none)")
	f.StringArrayVar(&c.origins, "allow-origin", nil, `origin allowed to call the API from another site, such as https://shop.example ("*" for any); repeatable`)
	f.DurationVar(&c.shutdownTimeout, "shutdown-timeout", defaultShutdownTimeout, "how long a stop (SIGINT, SIGTERM) waits for requests in flight, live page connections, the workflow and its database connections; past it, serve logs what had not stopped and exits 1")
	f.StringArrayVar(&c.hosts, "allow-host", nil, `host name the server answers to besides the loopback names (localhost and its subdomains, 127.0.0.0/8, [::1]), such as shop.internal ("*" for any); repeatable`)
	return cmd
}

// serveStock is how many units of each product serve puts on the shelf at
// start, so placed orders (and --demo-load's) can be reserved.
const serveStock = 1_000_000

func (c *serveCmd) run(ctx context.Context, out, errOut io.Writer) (err error) {
	// Bind first: an address that cannot be served (taken, out of range)
	// fails before the workflow starts, migrates or loads anything.
	ln, err := (&net.ListenConfig{}).Listen(ctx, "tcp", c.listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", c.listen, err)
	}
	defer func() { _ = ln.Close() }() // Serve closes it too; this covers the early returns
	guard, err := newHostGuard(ln.Addr(), c.hosts)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(errOut, nil))
	stop := &stopping{parent: ctx, timeout: c.shutdownTimeout, log: log}
	defer stop.end()
	// The live connections close beside the other steps of a stop, from
	// its start, and are awaited last: a page that never reads is cut off
	// at the deadline, without taking the other steps' time (they would
	// all be reported as not stopping), and is named for what it is.
	var liveClosed chan error
	defer func() {
		if liveClosed != nil {
			err = joinLine(err, stop.await("the live connections", func(context.Context) error { return <-liveClosed }))
		}
	}()
	store, closeStore, err := c.openStore(ctx, log)
	if err != nil {
		return err
	}
	defer func() {
		// pgxpool's Close waits for every connection in use: a handler
		// the stalled database holds keeps one.
		err = joinLine(err, stop.await("the database connections", func(context.Context) error { closeStore(); return nil }))
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// The server publishes order changes, and the app produces them: the
	// app is built first and reaches the server once it exists, before
	// anything runs.
	var srv *web.Server
	app, err := web.NewApp(&web.AppConfig{
		Store:    store,
		Orders:   orders.Config{Registerer: reg, LagSLA: c.sla, LagInterval: c.interval},
		OnChange: func(v web.OrderView) { srv.Publish(v) },
		Logger:   log,
	})
	if err != nil {
		return err
	}
	reg.MustRegister(gateCollector(app.Client()))
	hist, err := web.NewLagHistory(nil)
	if err != nil {
		return err
	}
	srv, err = web.New(&web.Config{
		Orders: app, Tracker: app.Tracker(), ReadModels: app.ReadModels(), Ops: app.Ops(),
		Lag: hist, Catalog: app.Catalog(), AllowedOrigins: c.origins, Logger: log,
	})
	if err != nil {
		return err
	}
	if err := app.Start(ctx); err != nil {
		return err
	}
	defer func() { err = joinLine(err, stop.await("the order workflow", app.Stop)) }()
	if err := app.StockShelves(ctx, serveStock); err != nil {
		return fmt.Errorf("stock the shelves: %w", err)
	}
	mon := app.Lag()
	if last, _ := mon.LastPass(); last.IsZero() {
		// /healthz answers 503 until a pass has measured something: take
		// one now rather than be unhealthy for the first moments.
		if _, err := mon.Check(ctx); err != nil {
			log.Warn("serve: the first lag pass failed; /healthz says so until one succeeds", "error", err)
		}
	}

	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{}, 2)
	defer func() {
		stopBG()
		err = joinLine(err, stop.await("the lag history and the simulated orders", func(context.Context) error {
			<-done
			<-done
			return nil
		}))
	}()
	go func() { defer func() { done <- struct{}{} }(); hist.Follow(bg, mon) }()
	go func() {
		defer func() { done <- struct{}{} }()
		if c.demoLoad > 0 {
			_ = web.RunLoad(bg, app, &web.LoadConfig{Rate: c.demoLoad, OnError: func(err error) {
				log.Warn("serve: a simulated order failed", "error", err)
			}})
		}
	}()

	hs := &http.Server{Handler: guard.wrap(opsMux(reg, mon, srv.Handler())), ReadHeaderTimeout: 5 * time.Second}
	fmt.Fprintf(out, "listening on %s\n", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		srv.Close()
		return err
	case <-ctx.Done():
	}
	// http.Server.Shutdown does not wait for WebSocket connections: they
	// close beside it, within the same deadline.
	sctx := stop.context()
	liveClosed = make(chan error, 1)
	go func() { liveClosed <- srv.Shutdown(sctx) }()
	err = stop.await("the HTTP server's requests in flight", hs.Shutdown)
	if err != nil {
		return err
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// stopping bounds serve's stop: one deadline, --shutdown-timeout from the
// first step of the stop, for all of its steps together, so a database
// that does not answer cannot hold the process for as long as each
// step's own timeouts add up to.
type stopping struct {
	parent  context.Context
	timeout time.Duration
	log     *slog.Logger
	ctx     context.Context
	cancel  context.CancelFunc
}

// context is the stop's context, whose deadline the first call sets.
func (s *stopping) context() context.Context {
	if s.ctx == nil {
		s.ctx, s.cancel = context.WithTimeout(context.WithoutCancel(s.parent), s.timeout)
	}
	return s.ctx
}

// await runs one step of the stop (what names it) and waits for it until
// the deadline. A step that fails, or is still running at the deadline
// (it is then left behind: the process is about to exit), is logged
// and returned as an error, so serve exits non-zero.
func (s *stopping) await(what string, step func(context.Context) error) error {
	ctx := s.context()
	done := make(chan error, 1)
	go func() { done <- step(ctx) }()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		select {
		case err = <-done: // it ended with the deadline, saying why
		default:
			s.log.Error("serve: stop: "+what+" did not stop within --shutdown-timeout; exiting without waiting for it", "shutdown_timeout", s.timeout.String())
			return fmt.Errorf("stop: %s did not stop within --shutdown-timeout %s", what, s.timeout)
		}
	}
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		s.log.Error("serve: stop: "+what+" did not stop within --shutdown-timeout", "shutdown_timeout", s.timeout.String(), "error", err)
		return fmt.Errorf("stop: %s did not stop within --shutdown-timeout %s: %w", what, s.timeout, err)
	}
	s.log.Error("serve: stop: "+what, "error", err)
	return fmt.Errorf("stop: %s: %w", what, err)
}

// joinLine is errors.Join on one line: main prints the error as one.
func joinLine(err, more error) error {
	switch {
	case err == nil:
		return more
	case more == nil:
		return err
	}
	return fmt.Errorf("%w; %w", err, more)
}

// end releases the stop's context.
func (s *stopping) end() {
	if s.cancel != nil {
		s.cancel()
	}
}

// openStore opens the in-memory store, or the PostgreSQL one after
// migrating its schema, with the order types registered.
func (c *serveCmd) openStore(ctx context.Context, log *slog.Logger) (converge.Store, func(), error) {
	if !c.postgres {
		mem, err := memstore.New(&memstore.Config{Registry: orders.NewRegistry()})
		if err != nil {
			return nil, nil, err
		}
		return mem, func() { _ = mem.Close() }, nil
	}
	pool, err := c.db.openPool(ctx)
	if err != nil {
		return nil, nil, err
	}
	if _, err := migrations.Migrate(ctx, pool, &migrations.Config{Schema: c.db.Schema}); err != nil {
		pool.Close()
		return nil, nil, err
	}
	pg, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: c.db.Schema, Registry: orders.NewRegistry(), Logger: log})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pg, func() { pg.Close(); pool.Close() }, nil
}

// gateCollector exports the client's gate counts: how many saga steps read
// read models, and how many found them behind and waited.
func gateCollector(client *converge.Client) prometheus.Collector {
	return collectorFuncs{
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "converge_saga_gated_steps_total", Help: "Saga steps that read read models (gated on the step's causal token).",
		}, func() float64 { return float64(client.GateStats().Gated) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "converge_saga_gated_behind_total", Help: "Gated saga steps whose read models were behind when the event arrived, so the step waited.",
		}, func() float64 { return float64(client.GateStats().Behind) }),
	}
}

// collectorFuncs is several collectors registered as one.
type collectorFuncs []prometheus.Collector

func (cs collectorFuncs) Describe(ch chan<- *prometheus.Desc) {
	for _, c := range cs {
		c.Describe(ch)
	}
}

func (cs collectorFuncs) Collect(ch chan<- prometheus.Metric) {
	for _, c := range cs {
		c.Collect(ch)
	}
}

// opsMux serves /metrics, /lag and /healthz beside app.
func opsMux(reg *prometheus.Registry, mon *lag.Monitor, app http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", lag.Handler(reg))
	mux.HandleFunc("GET /lag", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(nonNil(mon.Reports()))
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		last, err := mon.LastPass()
		if err == nil && last.IsZero() {
			// Nothing measured yet: "ok" would vouch for lag nobody saw.
			http.Error(w, "no lag pass has completed yet; try again in a moment", http.StatusServiceUnavailable)
			return
		}
		if err != nil {
			since := "it has not succeeded yet"
			if !last.IsZero() {
				since = "the last success was at " + last.UTC().Format(time.RFC3339)
			}
			http.Error(w, "the last lag pass failed ("+since+"; the log says why)", http.StatusServiceUnavailable)
			return
		}
		if age, late := mon.Overdue(); late {
			// The figures below would be old ones: a pass hangs (the
			// database does not answer) or the loop has stopped.
			http.Error(w, fmt.Sprintf("the last lag pass succeeded %s ago, more than %d intervals: passes hang or have stopped (the log may say why)",
				age.Round(time.Millisecond), lag.OverdueAfter), http.StatusServiceUnavailable)
			return
		}
		for _, r := range mon.Reports() {
			if r.Breached {
				http.Error(w, fmt.Sprintf("%s %s breaches its SLA (%s)", consumerKind(r.Class), r.Name, r.Reason), http.StatusServiceUnavailable)
				return
			}
		}
		_, _ = w.Write([]byte("ok\n"))
	})
	// Without these, another method on an ops path would fall through to
	// the app and read as "no such page" (404) rather than 405.
	for _, path := range []string{"/metrics", "/lag", "/healthz"} {
		mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, path+" answers GET (and HEAD) only", http.StatusMethodNotAllowed)
		})
	}
	mux.Handle("/", app)
	return mux
}

// consumerKind names what a lag report's class is about, for /healthz.
func consumerKind(class string) string {
	switch class {
	case "saga":
		return "saga processor"
	case "command":
		return "command handler"
	}
	return "projection"
}

func nonNil(rs []lag.Report) []lag.Report {
	if rs == nil {
		return []lag.Report{}
	}
	return rs
}
