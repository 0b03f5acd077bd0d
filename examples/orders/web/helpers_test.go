package web_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/examples/orders/web"
)

// readModel is the projection name the fake domain's reads wait on.
const readModel = "orders_view"

// fakeOrders is an order domain whose read model lags until the test
// applies the writes: Place and SetStatus only log a write; Apply makes the
// logged writes visible and advances the tracker, as a projection would.
type fakeOrders struct {
	tr *consistency.Tracker

	mu       sync.Mutex
	seq      uint64
	log      []write // every write, in order
	applied  int     // how many of log the read model reflects
	views    map[string]web.OrderView
	onGet    func() // called at the start of every Get, without mu
	placeErr error
}

type write struct {
	view web.OrderView
	tok  events.Token
}

func newFakeOrders(tr *consistency.Tracker) *fakeOrders {
	return &fakeOrders{tr: tr, views: map[string]web.OrderView{}}
}

func (f *fakeOrders) logLocked(v web.OrderView) events.Token {
	f.seq++
	v.Position = events.MakeToken(1, f.seq)
	f.log = append(f.log, write{view: v, tok: v.Position})
	return v.Position
}

func (f *fakeOrders) Place(_ context.Context, cmd web.PlaceOrder) (string, events.Token, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.placeErr != nil {
		return "", events.Token{}, f.placeErr
	}
	id := fmt.Sprintf("o-%03d", f.seq+1)
	tok := f.logLocked(web.OrderView{OrderID: id, CustomerID: cmd.CustomerID, SKU: cmd.SKU, Qty: cmd.Qty, AmountCents: 450 * int64(cmd.Qty), Status: web.StatusPending})
	return id, tok, nil
}

// SetStatus logs a status change of an order placed before.
func (f *fakeOrders) SetStatus(id, status, reason string) events.Token {
	f.mu.Lock()
	defer f.mu.Unlock()
	var v web.OrderView
	for _, w := range f.log {
		if w.view.OrderID == id {
			v = w.view
		}
	}
	v.Status, v.Reason = status, reason
	return f.logLocked(v)
}

// Apply makes every logged write visible and advances the tracker: the
// read model has caught up. It returns the views it applied.
func (f *fakeOrders) Apply() []web.OrderView {
	f.mu.Lock()
	var out []web.OrderView
	for ; f.applied < len(f.log); f.applied++ {
		w := f.log[f.applied]
		f.views[w.view.OrderID] = w.view
		out = append(out, w.view)
	}
	var tok events.Token
	if len(f.log) > 0 {
		tok = f.log[len(f.log)-1].tok
	}
	f.mu.Unlock()
	f.tr.Advance(readModel, tok)
	return out
}

// ApplyRowsOnly makes the writes visible without telling the tracker, as
// when a row commits before its checkpoint is reported.
func (f *fakeOrders) ApplyRowsOnly() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for ; f.applied < len(f.log); f.applied++ {
		f.views[f.log[f.applied].view.OrderID] = f.log[f.applied].view
	}
}

func (f *fakeOrders) Get(_ context.Context, id string) (web.OrderView, bool, error) {
	f.mu.Lock()
	hook := f.onGet
	f.mu.Unlock()
	if hook != nil {
		hook()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.views[id]
	return v, ok, nil
}

func (f *fakeOrders) List(_ context.Context, customer string, page web.PageQuery) ([]web.OrderView, string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ids []string
	for id, v := range f.views {
		if v.CustomerID == customer && id > page.After {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var out []web.OrderView
	for _, id := range ids {
		out = append(out, f.views[id])
	}
	if len(out) > page.Limit {
		out = out[:page.Limit]
		return out, out[len(out)-1].OrderID, nil
	}
	return out, "", nil
}

// CheckCursor makes the fake a web.CursorChecker: no fake order id holds
// a quote, so a cursor with one was never handed out.
func (f *fakeOrders) CheckCursor(after string) error {
	if strings.ContainsRune(after, '\'') {
		return web.ErrInvalidCursor
	}
	return nil
}

// fakeOps is an Ops with fixed sagas that records the actions asked of it.
type fakeOps struct {
	web.NoOps
	sagas []web.SagaDetail
	dls   []web.DeadLetter

	mu      sync.Mutex
	actions []string
	acted   chan string
}

func (o *fakeOps) SagaCounts(context.Context) (map[string]int, error) {
	m := map[string]int{}
	for _, s := range o.sagas {
		m[s.Status]++
	}
	return m, nil
}

func (o *fakeOps) Sagas(_ context.Context, f web.SagaFilter) ([]web.SagaSummary, error) {
	var out []web.SagaSummary
	for _, s := range o.sagas {
		if (f.Status == "" || s.Status == f.Status) && (!f.Stuck || s.Stuck) {
			out = append(out, s.SagaSummary)
		}
	}
	return out, nil
}

func (o *fakeOps) Saga(_ context.Context, id string) (web.SagaDetail, error) {
	for _, s := range o.sagas {
		if s.ID == id {
			return s, nil
		}
	}
	return web.SagaDetail{}, web.ErrSagaNotFound
}

func (o *fakeOps) act(what, id string) error {
	if _, err := o.Saga(context.Background(), id); err != nil {
		return err
	}
	if id == "done-1" {
		return fmt.Errorf("%w: it completed", web.ErrSagaConflict)
	}
	o.mu.Lock()
	o.actions = append(o.actions, what+" "+id)
	o.mu.Unlock()
	if o.acted != nil {
		o.acted <- what + " " + id
	}
	return nil
}

func (o *fakeOps) Retry(_ context.Context, id string) error  { return o.act("retry", id) }
func (o *fakeOps) Cancel(_ context.Context, id string) error { return o.act("cancel", id) }

func (o *fakeOps) DeadLetters(context.Context) ([]web.DeadLetter, error) { return o.dls, nil }

// bundle is what setup built around the Server under test.
type bundle struct {
	url     string
	client  *http.Client
	orders  *fakeOrders
	ops     *fakeOps
	tracker *consistency.Tracker
	server  *web.Server
	lag     *web.LagHistory
}

// setup serves a Server over a fakeOrders whose reads wait at most 100ms
// by default. change may adjust the Config first.
func setup(t *testing.T, change func(*web.Config)) *bundle {
	t.Helper()
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{DefaultTimeout: 100 * time.Millisecond, MaxTimeout: 10 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = tr.Stop(context.Background()) })
	b := &bundle{orders: newFakeOrders(tr), ops: &fakeOps{}, tracker: tr, lag: newLagHistory(t, nil)}
	cfg := &web.Config{
		Orders: b.orders, Tracker: tr, ReadModels: []string{readModel}, Ops: b.ops, Lag: b.lag,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	if change != nil {
		change(cfg)
	}
	s, err := web.New(cfg)
	require.NoError(t, err)
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	t.Cleanup(s.Close) // first: the live connections, which srv.Close does not wait for
	b.url, b.client, b.server = srv.URL, srv.Client(), s
	return b
}

// response is a read HTTP response.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(r.body, &m), "body %s", r.body)
	return m
}

// problem checks r is a problem+json of status and type, and returns it.
func (r response) problem(t *testing.T, status int, typ string) map[string]any {
	t.Helper()
	require.Equal(t, status, r.status, "body %s", r.body)
	require.Equal(t, consistency.ContentTypeProblem, r.header.Get("Content-Type"))
	p := r.json(t)
	require.Equal(t, typ, p["type"], "problem %v", p)
	require.EqualValues(t, status, p["status"])
	return p
}

func (b *bundle) do(t *testing.T, method, path string, header http.Header, body io.Reader) response {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, b.url+path, body)
	require.NoError(t, err)
	for k, vs := range header {
		req.Header[k] = vs
	}
	resp, err := b.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: out}
}

func (b *bundle) get(t *testing.T, path string, header http.Header) response {
	t.Helper()
	return b.do(t, http.MethodGet, path, header, nil)
}

func jsonHeader() http.Header { return http.Header{"Content-Type": {"application/json"}} }

// place POSTs an order of qty teas paid with a card the gateway charges,
// and returns its id and token.
func (b *bundle) place(t *testing.T, customer string, qty int) (string, events.Token) {
	t.Helper()
	return b.placeOrder(t, web.PlaceOrder{CustomerID: customer, SKU: "tea", Qty: qty, Card: "4242-4242-4242-4242"})
}

// placeOrder POSTs cmd and returns the order's id and token.
func (b *bundle) placeOrder(t *testing.T, cmd web.PlaceOrder) (string, events.Token) {
	t.Helper()
	r := b.do(t, http.MethodPost, "/orders", jsonHeader(), strings.NewReader(mustJSON(t, cmd)))
	require.Equal(t, http.StatusAccepted, r.status, "body %s", r.body)
	tok, err := events.ParseToken(r.header.Get(consistency.HeaderPosition))
	require.NoError(t, err)
	return as[string](t, r.json(t)["order_id"]), tok
}

func withToken(tok events.Token) http.Header {
	return http.Header{consistency.HeaderPosition: {tok.String()}}
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// as asserts v's type, failing the test with what v is otherwise.
func as[T any](t *testing.T, v any) T {
	t.Helper()
	x, ok := v.(T)
	require.True(t, ok, "%v (%T) is not a %T", v, v, x)
	return x
}

// syncBuffer is a log sink the server's goroutines and the test share.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newLagHistory is web.NewLagHistory of a cfg the test knows is valid.
func newLagHistory(t *testing.T, cfg *web.LagHistoryConfig) *web.LagHistory {
	t.Helper()
	h, err := web.NewLagHistory(cfg)
	require.NoError(t, err)
	return h
}
