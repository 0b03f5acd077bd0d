package projections

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

const (
	// MaxKeyLength is the longest row key, in bytes.
	MaxKeyLength = feed.MaxRowKeyLength
	// MaxTableNameLength is the longest table name, in bytes.
	MaxTableNameLength = feed.MaxRowTableLength
	// DefaultListLimit is how many rows List returns when ListOptions.Limit
	// is zero.
	DefaultListLimit = 1000
)

// Reader reads one table of a read model.
type Reader interface {
	// Get decodes the row stored under key into dst (JSON) and reports
	// whether there was one.
	Get(ctx context.Context, key string, dst any) (bool, error)
	// GetRow returns the row stored under key as stored: its JSON and the
	// token of the event that last wrote it (what a live view's snapshot
	// needs).
	GetRow(ctx context.Context, key string) (Row, bool, error)
	// List returns rows in byte-wise key order. A nil opts lists from the
	// first key, DefaultListLimit rows at most.
	List(ctx context.Context, opts *ListOptions) ([]Row, error)
}

// Table is one table of a read model as a handler sees it: a key-value
// store of JSON values whose writes commit with the event's checkpoint.
type Table interface {
	Reader
	// Put stores v (JSON-encoded) under key, replacing any previous value.
	Put(ctx context.Context, key string, v any) error
	// Delete removes the row under key; deleting a missing row is not an
	// error.
	Delete(ctx context.Context, key string) error
}

// Row is one stored row.
type Row struct {
	Key string
	// Value is the row's JSON. On PostgreSQL it is jsonb, normalised:
	// whitespace and key order may differ from what was put.
	Value json.RawMessage
	// Token is the position of the event that last wrote the row.
	Token events.Token
}

// Decode unmarshals the row's value into dst.
func (r Row) Decode(dst any) error {
	if err := json.Unmarshal(r.Value, dst); err != nil {
		return fmt.Errorf("projections: decode row %q: %w", r.Key, err)
	}
	return nil
}

// ListOptions pages through a table.
type ListOptions struct {
	// Prefix keeps only keys starting with it. Defaults to "" (every key).
	Prefix string
	// After starts the page after this key (the last key of the previous
	// page). Defaults to "" (the first key).
	After string
	// Limit caps the rows returned. Defaults to DefaultListLimit.
	Limit int
}

// Get reads the row under key as an R: the typed form of Reader.Get.
func Get[R any](ctx context.Context, r Reader, key string) (R, bool, error) {
	var v R
	ok, err := r.Get(ctx, key, &v)
	if err != nil || !ok {
		var zero R
		return zero, ok, err
	}
	return v, true, nil
}

// rowStore is what a Table reads and writes through: one generation's
// rows inside a unit (handlers), or the active generation's committed rows
// (readers).
type rowStore interface {
	get(ctx context.Context, table, key string) (feed.Row, bool, error)
	list(ctx context.Context, table string, q feed.RowQuery) ([]feed.Row, error)
	put(ctx context.Context, table, key string, value json.RawMessage) error
	del(ctx context.Context, table, key string) error
}

func newRowQuery(o *ListOptions) (feed.RowQuery, error) {
	var opts ListOptions
	if o != nil {
		opts = *o
	}
	if opts.Limit < 0 {
		return feed.RowQuery{}, fmt.Errorf("%w: ListOptions.Limit is %d (use 0 for the default)", ErrInvalidKey, opts.Limit)
	}
	if opts.Limit == 0 {
		opts.Limit = DefaultListLimit
	}
	// A key's rule, checked here so a bad option is ErrInvalidKey rather
	// than the store's feed.ErrInvalidRow; empty means "from the first key".
	if err := validateKeyText("ListOptions.Prefix", opts.Prefix); err != nil {
		return feed.RowQuery{}, err
	}
	if err := validateKeyText("ListOptions.After", opts.After); err != nil {
		return feed.RowQuery{}, err
	}
	return feed.RowQuery{Prefix: opts.Prefix, After: opts.After, Limit: opts.Limit}, nil
}

func validateTable(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty table name", ErrInvalidKey)
	case len(name) > MaxTableNameLength:
		return fmt.Errorf("%w: table name %q is %d bytes, the limit is %d", ErrInvalidKey, name, len(name), MaxTableNameLength)
	case !validText(name):
		return fmt.Errorf("%w: table name %q must be valid UTF-8 without control characters", ErrInvalidKey, name)
	}
	return nil
}

func validateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty key", ErrInvalidKey)
	}
	return validateKeyText("key", key)
}

// validateKeyText checks s, named what in the error, by the rule for a
// key's text; an empty s passes.
func validateKeyText(what, s string) error {
	switch {
	case len(s) > MaxKeyLength:
		return fmt.Errorf("%w: %s is %d bytes, the limit is %d", ErrInvalidKey, what, len(s), MaxKeyLength)
	case !validText(s):
		return fmt.Errorf("%w: %s %q must be valid UTF-8 without control characters", ErrInvalidKey, what, s)
	}
	return nil
}

// validText refuses what feed.Rows refuses (invalid UTF-8, and the control
// characters of events.IsControl: C0, C1, U+2028, U+2029), so both stores
// accept the same keys and the error is ErrInvalidKey, before anything
// reaches the store.
func validText(s string) bool {
	return utf8.ValidString(s) && !strings.ContainsFunc(s, events.IsControl)
}

// table implements Table over a rowStore. Writes are refused when
// readOnly, and recorded for RunnerConfig.OnUpdate when rec is set.
type table struct {
	name     string
	rows     rowStore
	readOnly bool
	rec      func(Update)
	err      error // a bad table name, reported by every call
}

func (t *table) Get(ctx context.Context, key string, dst any) (bool, error) {
	if t.err != nil {
		return false, t.err
	}
	if err := validateKey(key); err != nil {
		return false, err
	}
	row, ok, err := t.rows.get(ctx, t.name, key)
	if err != nil || !ok {
		return false, err
	}
	if err := json.Unmarshal(row.Value, dst); err != nil {
		return false, fmt.Errorf("projections: table %q: decode row %q: %w", t.name, key, err)
	}
	return true, nil
}

func (t *table) GetRow(ctx context.Context, key string) (Row, bool, error) {
	if t.err != nil {
		return Row{}, false, t.err
	}
	if err := validateKey(key); err != nil {
		return Row{}, false, err
	}
	row, ok, err := t.rows.get(ctx, t.name, key)
	if err != nil || !ok {
		return Row{}, false, err
	}
	return Row{Key: key, Value: append(json.RawMessage(nil), row.Value...), Token: row.Token}, true, nil
}

func (t *table) List(ctx context.Context, opts *ListOptions) ([]Row, error) {
	if t.err != nil {
		return nil, t.err
	}
	q, err := newRowQuery(opts)
	if err != nil {
		return nil, err
	}
	rows, err := t.rows.list(ctx, t.name, q)
	if err != nil {
		return nil, err
	}
	out := make([]Row, len(rows))
	for i, r := range rows {
		out[i] = Row{Key: r.Key, Value: r.Value, Token: r.Token}
	}
	return out, nil
}

func (t *table) Put(ctx context.Context, key string, v any) error {
	if t.err != nil {
		return t.err
	}
	if t.readOnly {
		return ErrReadOnly
	}
	if err := validateKey(key); err != nil {
		return err
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("projections: table %q: encode row %q: %w", t.name, key, err)
	}
	if err := t.rows.put(ctx, t.name, key, b); err != nil {
		return err
	}
	if t.rec != nil {
		t.rec(Update{Kind: UpdatePut, Table: t.name, Key: key, Value: b})
	}
	return nil
}

func (t *table) Delete(ctx context.Context, key string) error {
	if t.err != nil {
		return t.err
	}
	if t.readOnly {
		return ErrReadOnly
	}
	if err := validateKey(key); err != nil {
		return err
	}
	if err := t.rows.del(ctx, t.name, key); err != nil {
		return err
	}
	if t.rec != nil {
		t.rec(Update{Kind: UpdateDelete, Table: t.name, Key: key})
	}
	return nil
}

var _ Table = (*table)(nil)
