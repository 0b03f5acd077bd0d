package feed

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/converge-es/converge/events"
)

// ValidateRowAddress checks a row's namespace, table and key. Stores call
// it before touching storage, so both refuse the same input with the same
// ErrInvalidRow.
func ValidateRowAddress(ns, table, key string) error {
	if err := ValidateRowTable(ns, table); err != nil {
		return err
	}
	return validateRowPart("key", key, MaxRowKeyLength)
}

// ValidateRowTable checks a namespace and table (Rows.List).
func ValidateRowTable(ns, table string) error {
	if err := validateRowPart("namespace", ns, MaxRowNamespaceLength); err != nil {
		return err
	}
	return validateRowPart("table", table, MaxRowTableLength)
}

// ValidateRowNamespace checks a namespace alone (Rows.DeleteNamespace).
func ValidateRowNamespace(ns string) error {
	return validateRowPart("namespace", ns, MaxRowNamespaceLength)
}

func validateRowPart(what, s string, limit int) error {
	switch {
	case s == "":
		return fmt.Errorf("%w: empty %s", ErrInvalidRow, what)
	case len(s) > limit:
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrInvalidRow, what, len(s), limit)
	}
	return validateRowText(what, s)
}

// validateRowText refuses invalid UTF-8 and control characters: PostgreSQL
// text cannot hold NUL, and the others only ever arrive by mistake.
func validateRowText(what, s string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidRow, what)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s %q contains control character %U", ErrInvalidRow, what, s, r)
		}
	}
	return nil
}

// ValidateRowValue checks a row value: valid JSON of at most
// events.DefaultMaxPayloadBytes, without a \u0000 escape in any string
// (PostgreSQL's jsonb cannot store one, so memory refuses it too).
func ValidateRowValue(v json.RawMessage) error {
	switch {
	case len(v) == 0:
		return fmt.Errorf("%w: empty value (store JSON null to keep an empty row)", ErrInvalidRow)
	case len(v) > events.DefaultMaxPayloadBytes:
		return fmt.Errorf("%w: value is %d bytes, the limit is %d", ErrInvalidRow, len(v), events.DefaultMaxPayloadBytes)
	case !json.Valid(v):
		return fmt.Errorf("%w: value is not valid JSON", ErrInvalidRow)
	case hasNULEscape(v):
		return fmt.Errorf("%w: value contains the escape \\u0000, which PostgreSQL cannot store", ErrInvalidRow)
	}
	return nil
}

// hasNULEscape finds \u0000 inside a string of valid JSON, telling an
// escaped backslash followed by "u0000" (plain text) from the escape.
func hasNULEscape(v []byte) bool {
	for i := 0; i < len(v); i++ {
		if v[i] != '\\' {
			continue
		}
		if i+5 < len(v) && v[i+1] == 'u' && string(v[i+2:i+6]) == "0000" {
			return true
		}
		i++ // skip the escaped character, so `\\` never starts an escape
	}
	return false
}

// ValidateRowQuery checks a List query and returns it with its limit
// defaulted.
func ValidateRowQuery(q RowQuery) (RowQuery, error) {
	if q.Limit < 0 {
		return q, fmt.Errorf("%w: RowQuery.Limit is %d (use 0 for the default of %d)", ErrInvalidRow, q.Limit, DefaultRowLimit)
	}
	if q.Limit == 0 {
		q.Limit = DefaultRowLimit
	}
	if len(q.Prefix) > MaxRowKeyLength || len(q.After) > MaxRowKeyLength {
		return q, fmt.Errorf("%w: RowQuery.Prefix and After are at most %d bytes", ErrInvalidRow, MaxRowKeyLength)
	}
	if err := validateRowText("RowQuery.Prefix", q.Prefix); err != nil {
		return q, err
	}
	if err := validateRowText("RowQuery.After", q.After); err != nil {
		return q, err
	}
	return q, nil
}

// ValidateDeleteLimit checks Rows.DeleteNamespace's limit.
func ValidateDeleteLimit(limit int) error {
	if limit <= 0 {
		return fmt.Errorf("%w: DeleteNamespace limit is %d, it must be positive (1000 is a good batch)", ErrInvalidRow, limit)
	}
	return nil
}

// ValidatePrefetch checks the arguments of Rows.Prefetch: a known lock
// and valid addresses.
func ValidatePrefetch(lock Lock, addrs []RowAddress) error {
	if lock < LockNone || lock > LockUpdate {
		return fmt.Errorf("%w: unknown lock %d", ErrInvalidRow, lock)
	}
	for _, a := range addrs {
		if err := ValidateRowAddress(a.Namespace, a.Table, a.Key); err != nil {
			return err
		}
	}
	return nil
}
