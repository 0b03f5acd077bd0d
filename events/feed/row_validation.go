package feed

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/ascii"
)

// ValidateRowAddress checks a row's namespace, table and key. Stores call
// it before touching storage, so both refuse the same input with the same
// ErrInvalidRow. Each is 1 to its limit of bytes of valid UTF-8 without
// control characters as events.IsControl defines them (as stream ids):
// Unicode's category Cc, the C1 controls U+0080–U+009F included, and the
// line and paragraph separators U+2028 and U+2029.
//
// Versions before that rule refused only U+0000–U+001F and U+007F, so a
// database may hold rows an earlier version stored at an address with a C1
// control, U+2028 or U+2029 in it. Where it is in the key, such rows stay
// readable by List (its RowQuery.Prefix and After follow the earlier
// rule, so a List pages past them) and are deleted by DeleteNamespace,
// while Get, Put, Delete and Prefetch refuse their address. Where it is in
// the namespace or the table, every call refuses it: such rows can only be
// reached with SQL (none of converge's own namespaces or tables holds one).
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
	return validateRowText(what, s, events.IsControl)
}

// validateRowText refuses invalid UTF-8 and the characters refused
// reports: PostgreSQL text cannot hold NUL, and the other control
// characters only ever arrive by mistake. Addresses follow
// events.IsControl, RowQuery.Prefix and After isC0Control (see
// ValidateRowAddress).
func validateRowText(what, s string, refused func(rune) bool) error {
	if ascii.Printable(s) {
		return nil
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not valid UTF-8", ErrInvalidRow, what)
	}
	for _, r := range s {
		if refused(r) {
			return fmt.Errorf("%w: %s %q contains control character %U", ErrInvalidRow, what, s, r)
		}
	}
	return nil
}

// isC0Control is the rule List's RowQuery.Prefix and After follow: the C0
// controls and DEL only, so that a key stored by an earlier version (see
// ValidateRowAddress) can still be paged past.
func isC0Control(r rune) bool { return r < 0x20 || r == 0x7f }

// ValidateRowValue checks a row value: at most
// events.DefaultMaxPayloadBytes of JSON that both stores keep as given,
// by events.ValidatePayload's rules (valid UTF-8, no NUL, no lone
// surrogate escape, numbers PostgreSQL and Go read alike, no key twice in
// an object). Memory refuses what PostgreSQL's jsonb would refuse at
// commit, or would keep differently, so the two stores agree, spelling
// aside as for payloads (a zero's sign included: PostgreSQL gives -0 back
// as 0).
//
// Unlike an event's payload (events.Limits), the limit counts the value as
// sent: PostgreSQL gives numbers back written out in full and puts a space
// after each ',' and ':', so a value read back from it can be longer than
// the limit (events.PayloadReadBackSize says how long) and refused if put
// again unchanged. Store very large or very small numbers as strings.
func ValidateRowValue(v json.RawMessage) error {
	switch {
	case len(v) == 0:
		return fmt.Errorf("%w: empty value (store JSON null to keep an empty row)", ErrInvalidRow)
	case len(v) > events.DefaultMaxPayloadBytes:
		return fmt.Errorf("%w: value is %d bytes, the limit is %d", ErrInvalidRow, len(v), events.DefaultMaxPayloadBytes)
	}
	if err := events.ValidatePayload(v); err != nil {
		return fmt.Errorf("%w: value %w", ErrInvalidRow, err)
	}
	return nil
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
	if err := validateRowText("RowQuery.Prefix", q.Prefix, isC0Control); err != nil {
		return q, err
	}
	if err := validateRowText("RowQuery.After", q.After, isC0Control); err != nil {
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
