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

// equalNumber reports whether two JSON number literals have the same value,
// exactly and at any length: PostgreSQL writes numbers out in full, so
// 0.5e-3 comes back as 0.0005 and a literal may come back much longer, or
// shorter, than it went in. Both are brought to a normal form and compared;
// nothing is expanded, so an exponent costs what its digits do.
func equalNumber(a, b json.Number) bool {
	if a == b {
		return true
	}
	da, ok := parseDecimal(string(a))
	if !ok {
		return false
	}
	db, ok := parseDecimal(string(b))
	return ok && da.equal(db)
}

// decimal is a number literal's value in normal form: digits × 10^exp, with
// digits the significant digits (no leading or trailing zeros; empty for
// zero, whatever its sign and exponent). bigExp holds the exponent instead
// of exp when the literal's is beyond ±maxSmallExponent.
type decimal struct {
	neg    bool
	digits string
	exp    int64
	bigExp *big.Int
}

// maxSmallExponent bounds the exponents parseDecimal adjusts in int64: the
// adjustment (a count of digits) cannot overflow beyond it.
const maxSmallExponent = 1 << 62

// parseDecimal normalises a JSON number literal: -?int(.frac)?([eE][+-]?exp)?.
func parseDecimal(lit string) (decimal, bool) {
	var d decimal
	if strings.HasPrefix(lit, "-") {
		d.neg, lit = true, lit[1:]
	}
	mant, expText := lit, ""
	if i := strings.IndexAny(lit, "eE"); i >= 0 {
		mant, expText = lit[:i], lit[i+1:]
	}
	intPart, frac := mant, ""
	if i := strings.IndexByte(mant, '.'); i >= 0 {
		intPart, frac = mant[:i], mant[i+1:]
	}
	if intPart == "" || !allDigits(intPart) || !allDigits(frac) || (frac == "" && len(mant) != len(intPart)) {
		return decimal{}, false
	}
	// The value is (intPart frac) × 10^(exp - len(frac)). Leading zeros
	// change nothing; each trailing zero dropped raises the exponent.
	intPart = strings.TrimLeft(intPart, "0")
	shift := -int64(len(frac))
	if f := strings.TrimRight(frac, "0"); f != "" {
		shift += int64(len(frac) - len(f))
		d.digits = intPart + f
		if intPart == "" {
			d.digits = strings.TrimLeft(f, "0")
		}
	} else {
		i := strings.TrimRight(intPart, "0")
		shift += int64(len(frac) + len(intPart) - len(i))
		d.digits = i
	}
	if d.digits == "" {
		return decimal{}, true // zero, of any sign and exponent
	}
	if expText == "" {
		d.exp = shift
		return d, true
	}
	if e, err := strconv.ParseInt(expText, 10, 64); err == nil && e > -maxSmallExponent && e < maxSmallExponent {
		d.exp = e + shift
		return d, true
	}
	e, ok := new(big.Int).SetString(strings.TrimPrefix(expText, "+"), 10)
	if !ok {
		return decimal{}, false
	}
	d.bigExp = e.Add(e, big.NewInt(shift))
	return d, true
}

func allDigits(s string) bool {
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func (d decimal) equal(o decimal) bool {
	if d.neg != o.neg || d.digits != o.digits {
		return false
	}
	if d.bigExp == nil && o.bigExp == nil {
		return d.exp == o.exp
	}
	return d.exponent().Cmp(o.exponent()) == 0
}

func (d decimal) exponent() *big.Int {
	if d.bigExp != nil {
		return d.bigExp
	}
	return big.NewInt(d.exp)
}
