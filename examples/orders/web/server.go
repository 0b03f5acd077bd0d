package web

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/consistency/live"
	"github.com/converge-es/converge/events"
)

// Routes of the Server.
const (
	// PathLive is the WebSocket of live order updates: subscribe to order
	// ids (see package live for the protocol).
	PathLive = "/live/orders"
)

// Server serves the order API, the order page, the dashboard and their
// JSON endpoints. See the package doc for the routes.
type Server struct {
	cfg Config
	hub *live.Hub
	// wait is the consistency wait of the reads. They validate their
	// input before they call it, so a request they refuse anyway is
	// answered at once, not after the client's whole timeout as stale.
	wait    func(http.Handler) http.Handler
	handler http.Handler
}

// New builds a Server. Call Close when done, after the HTTP server has
// shut down, to close the live connections.
func New(cfg *Config) (*Server, error) {
	if cfg == nil {
		cfg = &Config{}
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	s := &Server{cfg: c}
	var hubOrigins []string
	if len(c.AllowedOrigins) > 0 {
		// liveOrigin has already refused the origins CORS refuses; the hub,
		// which reads its list as host patterns, must not judge again.
		hubOrigins = []string{"*"}
	}
	hub, err := live.NewHub(&live.Config{
		AllowedOrigins: hubOrigins,
		Snapshot:       s.snapshot,
		Logger:         c.Logger,
	})
	if err != nil {
		return nil, err
	}
	s.hub = hub
	s.wait = consistency.Middleware(c.Tracker, &consistency.HTTPConfig{Names: c.ReadModels})
	s.handler = s.cors(problemFallback(s.routes()))
	return s, nil
}

func (s *Server) routes() *http.ServeMux {
	mux := http.NewServeMux()

	mux.Handle("GET /{$}", pageHandler("index.html"))
	mux.Handle("GET /dashboard", pageHandler("dashboard.html"))
	mux.Handle("GET /assets/", assetHandler())

	mux.HandleFunc("POST /orders", s.placeOrder)
	mux.HandleFunc("GET /orders", s.listOrders)
	mux.HandleFunc("GET /orders/{id}", s.getOrder)
	mux.Handle("GET "+PathLive, s.liveOrigin(s.hub.Handler()))

	mux.HandleFunc("GET /api/sagas", s.listSagas)
	mux.HandleFunc("GET /api/sagas/{id}", s.getSaga)
	mux.HandleFunc("POST /api/sagas/{id}/retry", s.sagaAction(s.cfg.Ops.Retry))
	mux.HandleFunc("POST /api/sagas/{id}/cancel", s.sagaAction(s.cfg.Ops.Cancel))
	mux.HandleFunc("GET /api/dead-letters", s.deadLetters)
	mux.HandleFunc("GET /api/lag", s.lagHistory)
	if s.cfg.Catalog != nil {
		mux.Handle("GET /read-models", s.cfg.Catalog.Handler(s.cfg.Tracker))
	}
	return mux
}

// Handler returns the server's routes.
func (s *Server) Handler() http.Handler { return s.handler }

// Publish pushes v to the pages following its order. Call it after the
// read-model change that produced v has committed (for instance from
// projections.RunnerConfig.OnUpdate). It never blocks.
func (s *Server) Publish(v OrderView) {
	b, err := json.Marshal(v)
	if err != nil {
		return // an OrderView always encodes
	}
	s.hub.Publish(v.OrderID, b, v.Position)
}

// Close disconnects the live clients. Call it after http.Server.Shutdown,
// which does not wait for WebSocket connections.
func (s *Server) Close() { s.hub.Close() }

// Shutdown is Close bounded by ctx (live.Hub.Shutdown): page connections
// still open when ctx ends are cut off then, and its error says so. Run
// it beside http.Server.Shutdown, which does not track WebSocket
// connections, so both share one deadline.
func (s *Server) Shutdown(ctx context.Context) error { return s.hub.Shutdown(ctx) }

// snapshot gives a page that just subscribed the order's current row, so
// it misses nothing committed before it subscribed.
func (s *Server) snapshot(ctx context.Context, id string) (json.RawMessage, events.Token, bool, error) {
	if validateID(id) != nil {
		// No order has such an id, so there is nothing to show; the read
		// model would refuse the key, which the hub would log as a failure
		// of the server's.
		return nil, events.Token{}, false, nil //nolint:nilerr // not found, not a failure
	}
	v, found, err := s.cfg.Orders.Get(ctx, id)
	if err != nil || !found {
		return nil, events.Token{}, false, err
	}
	b, err := json.Marshal(v)
	return b, v.Position, err == nil, err
}

// problemFallback answers requests no route takes (404, or 405 with Allow)
// with problem details instead of the mux's plain text.
func problemFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		rec := &statusRecorder{header: http.Header{}, status: http.StatusOK}
		mux.ServeHTTP(rec, r)
		if rec.status != http.StatusMethodNotAllowed {
			writeProblem(w, newProblem(http.StatusNotFound, ProblemNotFound, "No such resource",
				"nothing is served at "+truncate(r.URL.Path)+" (the order API is under /orders, the pages at / and /dashboard)"))
			return
		}
		allow := rec.header.Get("Allow")
		w.Header().Set("Allow", allow)
		writeProblem(w, newProblem(http.StatusMethodNotAllowed, "", "",
			truncate(r.URL.Path)+" does not take "+truncate(r.Method)+"; it takes "+allow))
	})
}

// statusRecorder keeps the status and headers the mux's own error answers
// set, and drops their plain-text bodies.
type statusRecorder struct {
	header http.Header
	status int
}

func (r *statusRecorder) Header() http.Header         { return r.header }
func (r *statusRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (r *statusRecorder) WriteHeader(status int)      { r.status = status }
