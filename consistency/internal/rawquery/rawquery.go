package rawquery

import (
	"fmt"
	"net/url"
	"strings"
)

// Fault says why a pair naming the parameter cannot be decoded.
type Fault int

const (
	// Semicolon: the pair holds a ';', which Go does not split on and
	// ParseQuery refuses.
	Semicolon Fault = iota + 1
	// BadName: the parameter's name is followed by a bad %-escape in the
	// pair's key.
	BadName
	// BadValue: the pair's value has a bad %-escape.
	BadValue
)

// Error reports a query pair naming the parameter that url.ParseQuery
// would drop.
type Error struct {
	// Param is the parameter asked for.
	Param string
	// Fault says what is wrong with the pair.
	Fault Fault
	// Key is the pair's raw key (for Semicolon, the piece's key that
	// names Param).
	Key string
	// Value is the pair's raw value: for Semicolon, everything after the
	// key naming Param and its '='.
	Value string
	// Err is the decoding error of a BadValue.
	Err error
}

func (e *Error) Error() string {
	switch e.Fault {
	case Semicolon:
		return fmt.Sprintf("query parameter %s: the query contains ';', which does not separate query parameters", e.Param)
	case BadName:
		return fmt.Sprintf("query parameter %s: the name is followed by a bad %%-escape", e.Param)
	default:
		return fmt.Sprintf("query parameter %s: not %%-encoded correctly: %v", e.Param, e.Err)
	}
}

// Unwrap returns the decoding error, if any.
func (e *Error) Unwrap() error { return e.Err }

// Values returns the values of param in rawQuery, decoded as
// url.ParseQuery decodes them, in order. A pair naming param that
// ParseQuery would drop is an *Error.
func Values(rawQuery, param string) ([]string, error) {
	var vals []string
	for rest := rawQuery; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		if pair == "" {
			continue
		}
		if strings.Contains(pair, ";") {
			// Go no longer splits on ';', but a client that does meant the
			// parameter in any of the pieces, so each piece's key counts.
			for off := 0; off < len(pair); {
				piece, _, _ := strings.Cut(pair[off:], ";")
				key, _, _ := strings.Cut(piece, "=")
				if match, _ := namesParam(key, param); match {
					return nil, &Error{
						Param: param, Fault: Semicolon, Key: key,
						Value: strings.TrimPrefix(pair[off+len(key):], "="),
					}
				}
				off += len(piece) + 1
			}
			continue
		}
		key, value, _ := strings.Cut(pair, "=")
		match, badKey := namesParam(key, param)
		if !match {
			continue
		}
		if badKey {
			return nil, &Error{Param: param, Fault: BadName, Key: key, Value: value}
		}
		decoded, err := url.QueryUnescape(value)
		if err != nil {
			return nil, &Error{Param: param, Fault: BadValue, Key: key, Value: value, Err: err}
		}
		vals = append(vals, decoded)
	}
	return vals, nil
}

// namesParam reports whether the raw query key names param, and whether
// it is malformed: param's name followed by a bad %-escape and whatever
// comes after it, which ParseQuery would drop.
func namesParam(raw, param string) (match, malformed bool) {
	key, err := url.QueryUnescape(raw)
	if err == nil {
		return key == param, false
	}
	bad := firstBadEscape(raw)
	key, err = url.QueryUnescape(raw[:bad])
	return err == nil && key == param, true
}

// firstBadEscape returns the index of the first '%' in s not followed by
// two hex digits, or len(s).
func firstBadEscape(s string) int {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && (i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2])) {
			return i
		}
	}
	return len(s)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
