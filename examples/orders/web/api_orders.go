package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// placed is the body of a 202 answer to POST /orders.
type placed struct {
	OrderID string `json:"order_id"`
	Status  string `json:"status"`
	// Position is the write's token, also in X-Consistency-Position.
	Position events.Token `json:"position"`
	// Href is where the order can be read, with the token.
	Href string `json:"href"`
}

// orderPage is the body of GET /orders.
type orderPage struct {
	Orders []OrderView `json:"orders"`
	// Next is the cursor of the next page, for ?after=; "" on the last.
	Next string `json:"next,omitempty"`
	// Stale mirrors X-Consistency-Stale: the read model had not reached
	// the client's token, so a just-placed order may be missing.
	Stale bool `json:"stale"`
}

// bodyShape is what a route's JSON body is, for decode's answers.
type bodyShape struct {
	what    string // "a JSON order"
	example string // a valid body
	emptyOK bool   // an empty body is taken as the zero value
}

// orderBody is the body of POST /orders.
var orderBody = bodyShape{what: "a JSON order", example: `{"customer_id":"c-1","sku":"tea","qty":2,"card":"4242-4242-4242-4242"}`}

// maxCursorLen bounds ?after=.
const maxCursorLen = 256

// placeOrder is POST /orders: 202 with the order id and the write's token.
// The order is not in the read model yet; the client reads it back with
// the token. With an Idempotency-Key, a retry of the same order is
// answered as the first request was, and the key is refused for another
// order (422): see the package doc.
func (s *Server) placeOrder(w http.ResponseWriter, r *http.Request) {
	if !isJSON(r) {
		writeProblem(w, newProblem(http.StatusUnsupportedMediaType, ProblemUnsupportedMediaType, "Unsupported media type",
			`send the order as JSON with "Content-Type: application/json"`))
		return
	}
	key, p := idempotencyKey(r)
	if p != nil {
		writeProblem(w, p)
		return
	}
	var cmd PlaceOrder
	if !s.decode(w, r, &cmd, orderBody) {
		return
	}
	cmd.IdempotencyKey = key
	if err := cmd.Validate(); err != nil {
		s.writeError(w, err)
		return
	}
	id, tok, err := s.cfg.Orders.Place(r.Context(), cmd)
	if err != nil {
		s.writeError(w, err)
		return
	}
	href := "/orders/" + url.PathEscape(id) + "?" + url.Values{consistency.QueryParam: {tok.String()}}.Encode()
	consistency.SetPosition(w, tok)
	w.Header().Set("Location", href)
	writeJSON(w, http.StatusAccepted, placed{OrderID: id, Status: StatusPending, Position: tok, Href: href})
}

// decode reads a JSON body of at most MaxBodyBytes into dst, a pointer
// to a struct, refusing anything but one object of dst's fields, and
// answers the problem itself when it cannot.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, dst any, shape bodyShape) bool {
	tooLarge := func() bool {
		writeProblem(w, newProblem(http.StatusRequestEntityTooLarge, ProblemBodyTooLarge, "Body too large",
			fmt.Sprintf("the body is over the %d-byte limit", s.cfg.MaxBodyBytes)))
		return false
	}
	if r.ContentLength > s.cfg.MaxBodyBytes {
		return tooLarge()
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	if err == nil && len(bytes.TrimSpace(body)) == 0 {
		if shape.emptyOK {
			return true
		}
		err = io.EOF
	}
	if err == nil {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		err = dec.Decode(dst)
		if err == nil {
			// One JSON value, nothing after it.
			if _, extra := dec.Token(); extra != io.EOF {
				err = errors.New("unexpected data after the JSON object")
			}
		}
	}
	if err == nil {
		err = exactKeys(body, dst)
	}
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return tooLarge()
	case errors.Is(err, io.EOF):
		writeProblem(w, newProblem(http.StatusBadRequest, ProblemInvalidBody, "Invalid body", "the body is empty: send "+shape.what+" such as "+shape.example))
		return false
	case err != nil:
		// The decoder's messages quote the input (a field's name, a
		// number's digits): bounded, as every echo is.
		writeProblem(w, newProblem(http.StatusBadRequest, ProblemInvalidBody, "Invalid body",
			"the body is not "+shape.what+": "+truncate(err.Error())+" (send "+shape.example+")"))
		return false
	}
	return true
}

// getOrder is GET /orders/{id}: it checks the id, then reads the order
// through the consistency wait (readOrder).
func (s *Server) getOrder(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := validateID(id); err != nil {
		p := newProblem(http.StatusBadRequest, ProblemInvalidParameter, "Invalid order id", "the order id "+err.Error())
		p.Parameter, p.Value = "id", truncate(id)
		writeProblem(w, p)
		return
	}
	s.wait(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.readOrder(w, r, id) })).ServeHTTP(w, r)
}

// readOrder answers GET /orders/{id} for a valid id. Behind
// consistency.Middleware: with a token, the read waited for the read
// models first.
//
// A client that checks only response.ok must never take a read that did
// not reach its token for the answer, so such a read is not a 2xx: 404
// (ProblemNotYetVisible) while the order is not in the read model, 503
// (ProblemStale, with the older state in "order") while it is there but
// behind. Both carry X-Consistency-Stale: true and Retry-After.
func (s *Server) readOrder(w http.ResponseWriter, r *http.Request, id string) {
	st, _ := consistency.StatusFromContext(r.Context())
	v, found, err := s.cfg.Orders.Get(r.Context(), id)
	if err != nil {
		s.writeError(w, err)
		return
	}
	if found && st.Stale && !v.Position.Before(st.Target) {
		// The row itself was written at or after the token: whatever the
		// checkpoints say, this order reflects the client's write.
		st.Stale = false
		w.Header().Set(consistency.HeaderStale, "false")
		w.Header().Set(consistency.HeaderPosition, v.Position.Max(st.Checkpoint).String())
	}
	switch {
	case found && !st.Stale:
		writeJSON(w, http.StatusOK, v)
	case !found && !st.Stale:
		writeProblem(w, newProblem(http.StatusNotFound, ProblemNotFound, "Order not found",
			fmt.Sprintf("there is no order %q (the read model is at %s)", id, st.Checkpoint)))
	case !found:
		w.Header().Set("Retry-After", "1")
		writeProblem(w, newProblem(http.StatusNotFound, ProblemNotYetVisible, "Order not visible yet",
			fmt.Sprintf("the read model is at %s, before your write at %s (%s); retry with the same token", st.Checkpoint, st.Target, staleReason(st))))
	default:
		w.Header().Set("Retry-After", "1")
		p := newProblem(http.StatusServiceUnavailable, ProblemStale, "Order not up to date yet",
			fmt.Sprintf("the read model is at %s, before your write at %s (%s); \"order\" is its older state; retry with the same token", st.Checkpoint, st.Target, staleReason(st)))
		p.Order = &v
		writeProblem(w, p)
	}
}

func staleReason(st consistency.Status) string {
	if st.Behind >= 0 {
		return fmt.Sprintf("%d events behind, %s", st.Behind, st.Reason)
	}
	return string(st.Reason)
}

// listOrders is GET /orders?customer=ID[&limit=N][&after=CURSOR]: it
// checks the parameters, then reads the page through the consistency wait
// (readList).
func (s *Server) listOrders(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bad := func(param, value, detail string) {
		p := newProblem(http.StatusBadRequest, ProblemInvalidParameter, "Invalid query parameter", detail)
		p.Parameter, p.Value = param, truncate(value)
		writeProblem(w, p)
	}
	for _, param := range []string{"customer", "after", "limit"} {
		// Go keeps every value of a repeated parameter and Get reads the
		// first: a request naming two customers would list one silently.
		if vs := q[param]; len(vs) > 1 {
			bad(param, strings.Join(vs, ","), fmt.Sprintf("%s is given %d times: give it once", param, len(vs)))
			return
		}
	}
	customer := q.Get("customer")
	if err := validateID(customer); err != nil {
		bad("customer", customer, "customer "+err.Error()+": list a customer's orders with ?customer=ID")
		return
	}
	page := PageQuery{Limit: DefaultPageLimit, After: q.Get("after")}
	if raw := q.Get("limit"); raw != "" {
		n, err := strconv.Atoi(raw)
		if err != nil || n < 1 || n > MaxPageLimit {
			bad("limit", raw, fmt.Sprintf("limit must be a whole number from 1 to %d", MaxPageLimit))
			return
		}
		page.Limit = n
	}
	if len(page.After) > maxCursorLen {
		bad("after", page.After, "after is not a cursor this API returned: pass the \"next\" of the previous page as is")
		return
	}
	if cc, ok := s.cfg.Orders.(CursorChecker); ok {
		if err := cc.CheckCursor(page.After); err != nil {
			s.writeError(w, err)
			return
		}
	}
	s.wait(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { s.readList(w, r, customer, page) })).ServeHTTP(w, r)
}

// readList answers GET /orders for valid parameters, behind
// consistency.Middleware. A stale list is still a 200, labelled by
// X-Consistency-Stale and "stale": a list has no single order whose
// absence could be mistaken for an answer.
func (s *Server) readList(w http.ResponseWriter, r *http.Request, customer string, page PageQuery) {
	views, next, err := s.cfg.Orders.List(r.Context(), customer, page)
	if err != nil {
		s.writeError(w, err)
		return
	}
	st, _ := consistency.StatusFromContext(r.Context())
	if views == nil {
		views = []OrderView{}
	}
	if next != "" {
		nq := url.Values{"customer": {customer}, "limit": {strconv.Itoa(page.Limit)}, "after": {next}}
		w.Header().Set("Link", "</orders?"+nq.Encode()+`>; rel="next"`)
	}
	writeJSON(w, http.StatusOK, orderPage{Orders: views, Next: next, Stale: st.Stale})
}

// writeError answers a domain or server error: 422 for a *ValidationError
// or a reused Idempotency-Key, 503 for a request whose context ended first
// (the client went away, or the server is stopping: no error of the
// server's, so it logs at Debug) or refused by a strong read model that is
// catching up (projections.ErrStrongCatchingUp: nothing written), else 500 without the details, which go
// to the log.
func (s *Server) writeError(w http.ResponseWriter, err error) {
	var ve *ValidationError
	switch {
	case errors.As(err, &ve):
		p := newProblem(http.StatusUnprocessableEntity, ProblemValidation, "Invalid order", ve.Error())
		p.Errors = ve.Fields
		writeProblem(w, p)
	case errors.Is(err, ErrIdempotencyKeyReused):
		p := newProblem(http.StatusUnprocessableEntity, ProblemIdempotencyKeyReused, HeaderIdempotencyKey+" already used",
			"this customer placed another order (other sku, qty or card) with this "+HeaderIdempotencyKey+", and this one was not placed: "+
				"a retry must send the body of the first request, and a new order needs a new key")
		p.Parameter = HeaderIdempotencyKey
		writeProblem(w, p)
	case errors.Is(err, ErrInvalidCursor):
		p := newProblem(http.StatusBadRequest, ProblemInvalidParameter, "Invalid query parameter", err.Error())
		p.Parameter = "after"
		writeProblem(w, p)
	case errors.Is(err, projections.ErrStrongCatchingUp):
		// A strong read model that is catching up refused the append:
		// nothing was placed, and a retry soon will be.
		s.cfg.Logger.Warn("web: a strong read model is catching up; the write was refused", "error", err)
		w.Header().Set("Retry-After", "1")
		writeProblem(w, newProblem(http.StatusServiceUnavailable, "", "", "a read model this write updates is catching up, and nothing was written: retry shortly"))
	case errors.Is(err, context.Canceled):
		s.cfg.Logger.Debug("web: request abandoned before it was answered", "error", err)
		w.Header().Set("Retry-After", "1")
		// The write may have been done or not: only a key makes a second
		// POST /orders find the first instead of placing again.
		writeProblem(w, newProblem(http.StatusServiceUnavailable, "", "", "the request ended before it was answered, and may have taken effect: retry it; "+
			"a POST /orders is safe to retry only with the same "+HeaderIdempotencyKey+" (without one, a retry may place the order twice)"))
	default:
		s.cfg.Logger.Error("web: request failed", "error", err)
		writeProblem(w, newProblem(http.StatusInternalServerError, "", "", "the server could not answer; it logged why"))
	}
}

// maxEcho bounds the input a problem echoes back.
const maxEcho = 128

// truncate bounds an echoed input, so a client cannot make the server
// reflect a large value back.
func truncate(s string) string {
	if len(s) <= maxEcho {
		return s
	}
	return strings.ToValidUTF8(s[:maxEcho], "") + "…"
}

// exactKeys refuses what encoding/json lets through into dst, a struct:
// a key that matches a field only when case is ignored ("CUSTOMER_ID"),
// and a key given twice (the last would win). Both would take a body for
// something it does not say.
func exactKeys(body []byte, dst any) error {
	t := reflect.TypeOf(dst)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	names := map[string]bool{}
	for f := range t.Fields() {
		if f.Tag.Get("json") == "-" {
			continue // never in a body (PlaceOrder.IdempotencyKey)
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" {
			name = f.Name
		}
		names[name] = true
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return err
	}
	if tok != json.Delim('{') {
		// null decodes into a struct as nothing at all.
		return errors.New("json: the body is not an object")
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		switch {
		case !names[key]:
			return fmt.Errorf("json: unknown field %q (field names are case-sensitive)", key)
		case seen[key]:
			return fmt.Errorf("json: field %q is given twice", key)
		}
		seen[key] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return err
		}
	}
	return nil
}
