package web

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/converge-es/converge/events"
)

// Orders is what the HTTP API needs from the order domain. The domain
// behind it decides how orders are placed and which read model answers;
// the API only adds HTTP, consistency waits and live updates.
type Orders interface {
	// Place places an order and returns its id and the token of the
	// write, which the client sends back to read its own write.
	Place(ctx context.Context, cmd PlaceOrder) (orderID string, tok events.Token, err error)
	// Get reads one order from the read model, as it is now. found is
	// false when the read model has no row for id.
	Get(ctx context.Context, id string) (v OrderView, found bool, err error)
	// List reads a customer's orders from the read model, a page at a
	// time. next is the cursor of the following page, "" on the last one.
	List(ctx context.Context, customer string, page PageQuery) (views []OrderView, next string, err error)
}

// Order statuses as the API and the page show them. A domain maps its own
// states onto these three.
const (
	// StatusPending: placed, not decided yet.
	StatusPending = "pending"
	// StatusConfirmed: the order went through.
	StatusConfirmed = "confirmed"
	// StatusCancelled: the order was cancelled; OrderView.Reason says why.
	StatusCancelled = "cancelled"
)

// PlaceOrder is the body of POST /orders:
//
//	{"customer_id": "c-1", "sku": "tea", "qty": 2, "card": "4242-4242-4242-4242"}
//
// The domain prices the order (its catalog's price times qty) and may
// refuse a SKU it does not sell with a 422 on "sku".
type PlaceOrder struct {
	// CustomerID identifies who orders: 1 to MaxIDLen letters, digits,
	// '-', '_' or '.'.
	CustomerID string `json:"customer_id"`
	// SKU is the product, such as "tea": an id like CustomerID.
	SKU string `json:"sku"`
	// Qty is how many units: 1 to MaxQty.
	Qty int `json:"qty"`
	// Card is the card to charge: 12 to 19 digits, which spaces or '-'
	// may separate, in at most MaxCardLen bytes. The domain keeps no more
	// of it than a payment provider's token and the last four digits.
	Card string `json:"card"`
	// IdempotencyKey is the request's Idempotency-Key header, never part
	// of the body; "" without one. Given one, Orders.Place places at most
	// one order per customer and key: the same order again answers the
	// id and token of the first placing, another order is refused with
	// ErrIdempotencyKeyReused.
	IdempotencyKey string `json:"-"`
}

// Limits of PlaceOrder and of ids in URLs.
const (
	// MaxIDLen is the longest customer, product or order id, in bytes.
	MaxIDLen = 64
	// MaxQty is the most units one order may ask for.
	MaxQty = 100
	// MaxCardLen is the longest card number, separators included.
	MaxCardLen = 32
)

// Validate returns a *ValidationError naming every field at fault, or nil.
func (p PlaceOrder) Validate() error {
	var errs []FieldError
	if err := validateID(p.CustomerID); err != nil {
		errs = append(errs, FieldError{Field: "customer_id", Message: err.Error()})
	}
	if err := validateID(p.SKU); err != nil {
		errs = append(errs, FieldError{Field: "sku", Message: err.Error()})
	}
	if p.Qty < 1 || p.Qty > MaxQty {
		errs = append(errs, FieldError{Field: "qty", Message: fmt.Sprintf("must be a whole number of units from 1 to %d, got %d", MaxQty, p.Qty)})
	}
	if err := validateCard(p.Card); err != nil {
		errs = append(errs, FieldError{Field: "card", Message: err.Error()})
	}
	if len(errs) > 0 {
		return &ValidationError{Fields: errs}
	}
	return nil
}

// Card numbers have 12 to 19 digits (ISO/IEC 7812).
const (
	minCardDigits = 12
	maxCardDigits = 19
)

func validateCard(card string) error {
	digits := len(card) - strings.Count(card, " ") - strings.Count(card, "-") // once only those are left
	switch {
	case card == "":
		return errors.New("is required")
	case len(card) > MaxCardLen:
		return fmt.Errorf("is %d bytes, the limit is %d", len(card), MaxCardLen)
	case strings.IndexFunc(card, func(r rune) bool { return (r < '0' || r > '9') && r != '-' && r != ' ' }) >= 0:
		return errors.New("may hold only digits, spaces and '-'")
	case digits < minCardDigits || digits > maxCardDigits:
		return fmt.Errorf("has %d digits: a card number has %d to %d", digits, minCardDigits, maxCardDigits)
	}
	return nil
}

// validateID accepts the ids this API hands out and takes: short, printable
// and safe in a URL path without escaping.
func validateID(id string) error {
	switch {
	case id == "":
		return errors.New("is required")
	case len(id) > MaxIDLen:
		return fmt.Errorf("is %d bytes, the limit is %d", len(id), MaxIDLen)
	case !utf8.ValidString(id) || strings.IndexFunc(id, func(r rune) bool {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		return !ok
	}) >= 0:
		return errors.New("may hold only letters, digits, '-', '_' and '.'")
	}
	return nil
}

// OrderView is an order as the read model has it.
type OrderView struct {
	OrderID    string `json:"order_id"`
	CustomerID string `json:"customer_id"`
	SKU        string `json:"sku,omitempty"`
	Qty        int    `json:"qty,omitempty"`
	// AmountCents is the order's total in cents, as the domain priced it.
	AmountCents int64 `json:"amount_cents"`
	// Status is StatusPending, StatusConfirmed or StatusCancelled.
	Status string `json:"status"`
	// Reason says why an order was cancelled.
	Reason string `json:"reason,omitempty"`
	// Position is the token of the event that last changed the row: the
	// view reflects every event up to it. Clients order updates by it.
	Position events.Token `json:"position"`
}

// PageQuery asks for one page of a list.
type PageQuery struct {
	// Limit is the most items to return, 1 to MaxPageLimit. Defaults to
	// DefaultPageLimit.
	Limit int
	// After is the cursor a previous page returned as next; "" for the
	// first page.
	After string
}

// Page sizes of GET /orders.
const (
	DefaultPageLimit = 20
	MaxPageLimit     = 100
)

// ErrInvalidCursor is returned by Orders.List for an After it did not
// hand out; the API answers it with 400.
var ErrInvalidCursor = errors.New("web: after is not a cursor this API returned (pass the \"next\" of the previous page as is)")

// CursorChecker is implemented by an Orders that can tell a cursor it
// could never have handed out without reading anything. The API then
// refuses a forged ?after= with its 400 before the consistency wait, as it
// does every other bad parameter, instead of after the client's timeout.
// CheckCursor returns ErrInvalidCursor (or an error wrapping it) for such a
// cursor and nil for "" and every cursor List may accept.
type CursorChecker interface {
	CheckCursor(after string) error
}

// FieldError is one invalid field of a request body.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// ValidationError is a request the domain refuses as invalid; the API
// answers it with 422 and the fields at fault. Orders.Place may return one
// for rules only the domain knows.
type ValidationError struct {
	Fields []FieldError
}

func (e *ValidationError) Error() string {
	parts := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		parts[i] = f.Field + " " + f.Message
	}
	return "invalid order: " + strings.Join(parts, "; ")
}
