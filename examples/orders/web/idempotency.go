package web

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/google/uuid"
)

// HeaderIdempotencyKey makes POST /orders safe to retry: the name of the
// IETF httpapi draft (draft-ietf-httpapi-idempotency-key-header).
const HeaderIdempotencyKey = "Idempotency-Key"

// MaxIdempotencyKeyLen is the longest Idempotency-Key, in bytes: room for
// a UUID (36), 256 random bits in base64 (44) or a client's prefix and
// either, short enough that a key echoed in a problem is read whole.
const MaxIdempotencyKeyLen = 64

// ErrIdempotencyKeyReused is returned by Orders.Place for a key the
// customer already placed another order with; the API answers it with
// 422 (ProblemIdempotencyKeyReused).
var ErrIdempotencyKeyReused = errors.New("web: the Idempotency-Key was used for another order of this customer (a retry sends the same body; a new order needs a new key)")

// idempotencyKey returns the request's Idempotency-Key, "" without one,
// or the problem that refuses it.
func idempotencyKey(r *http.Request) (string, *problem) {
	vs, ok := r.Header[HeaderIdempotencyKey]
	if !ok {
		return "", nil
	}
	bad := func(value, detail string) (string, *problem) {
		p := newProblem(http.StatusBadRequest, ProblemInvalidParameter, "Invalid "+HeaderIdempotencyKey, detail+
			fmt.Sprintf(": a key is 1 to %d printable ASCII characters other than space and ',' (a UUID will do), sent once", MaxIdempotencyKeyLen))
		p.Parameter, p.Value = HeaderIdempotencyKey, truncate(value)
		return "", p
	}
	if len(vs) > 1 {
		// Two keys would name two orders: placing under either one could
		// place the order twice.
		return bad(strings.Join(vs, ","), fmt.Sprintf("%s is given %d times", HeaderIdempotencyKey, len(vs)))
	}
	key := vs[0]
	switch {
	case key == "":
		return bad(key, HeaderIdempotencyKey+" is empty (leave the header out to place an order that is not safe to retry)")
	case len(key) > MaxIdempotencyKeyLen:
		return bad(key, fmt.Sprintf("%s is %d bytes, the limit is %d", HeaderIdempotencyKey, len(key), MaxIdempotencyKeyLen))
	}
	// Spaces and control characters make keys that look alike, and a ','
	// is what a proxy joins two headers with: "a,b" would read as one key.
	for i := range len(key) {
		if b := key[i]; b <= ' ' || b > '~' || b == ',' {
			return bad(key, fmt.Sprintf("%s holds %q at byte %d", HeaderIdempotencyKey, key[i:i+1], i))
		}
	}
	return key, nil
}

// keyNamespace derives the ids of orders placed with an Idempotency-Key.
var keyNamespace = uuid.MustParse("2c4f0159-06f7-46c7-9811-b893bb010419")

// keyedOrderID is the id of the order customer places with key: the same
// for every retry, so the store recognises the order placed again, and
// another for another customer, so customers' keys never meet. Neither
// id holds a NUL (validateID, idempotencyKey), so the pair reads one way
// only.
func keyedOrderID(customer, key string) string {
	return uuid.NewSHA1(keyNamespace, []byte(customer+"\x00"+key)).String()
}
