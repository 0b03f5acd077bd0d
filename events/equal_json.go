package events

import (
	"bytes"
	"encoding/json"
	"io"
	"math/big"
	"strconv"
	"strings"
)

// EqualJSON reports whether two payloads hold the same content: the same
// structure, byte-identical strings and numbers of equal value. Whitespace,
// key order, and how numbers and strings are spelled (1e2 or 100, \u00e9 or
// é) do not matter, because PostgreSQL normalises them and memory does not.
// It is how a retried append is recognised as the same events, and how tests
// check that a payload read back is the payload appended. Invalid JSON is
// equal to nothing.
func EqualJSON(a, b []byte) bool {
	va, ok := decodeExact(a)
	if !ok {
		return false
	}
	vb, ok := decodeExact(b)
	if !ok {
		return false
	}
	return equalValue(va, vb)
}

func decodeExact(p []byte) (any, bool) {
	d := json.NewDecoder(bytes.NewReader(p))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, false
	}
	if _, err := d.Token(); err != io.EOF {
		return nil, false // a second document
	}
	return v, true
}

func equalValue(a, b any) bool {
	switch a := a.(type) {
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, va := range a {
			vb, ok := b[k]
			if !ok || !equalValue(va, vb) {
				return false
			}
		}
		return true
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equalValue(a[i], b[i]) {
				return false
			}
		}
		return true
	case json.Number:
		b, ok := b.(json.Number)
		return ok && equalNumber(a, b)
	default: // string, bool, nil
		return a == b
	}
}

// maxExactNumber and maxExactExponent bound the literals compared by value,
// which costs memory in the exponent; others (which ValidatePayload never
// lets through) are compared as text.
const (
	maxExactNumber   = 1000
	maxExactExponent = MaxNumberExponent
)

func equalNumber(a, b json.Number) bool {
	if a == b {
		return true
	}
	if !exactlyComparable(a) || !exactlyComparable(b) {
		return false
	}
	ra, ok := new(big.Rat).SetString(string(a))
	if !ok {
		return false
	}
	rb, ok := new(big.Rat).SetString(string(b))
	return ok && ra.Cmp(rb) == 0
}

func exactlyComparable(n json.Number) bool {
	if len(n) > maxExactNumber {
		return false
	}
	i := strings.IndexAny(string(n), "eE")
	if i < 0 {
		return true
	}
	exp, err := strconv.Atoi(string(n[i+1:]))
	return err == nil && exp >= -maxExactExponent && exp <= maxExactExponent
}
