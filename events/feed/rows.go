package feed

import (
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/converge-es/converge/events"
)

// Rows is transactional key-value storage beside the events: read models
// and converge's own bookkeeping (projection generations, halts, dead
// letters, saga state) live in it, so they commit in the same unit as the
// appends and the checkpoint that caused them. Both stores implement it
// with the same semantics (the rows table on PostgreSQL, maps in memory)
// and pass one suite.
//
// A row is addressed by namespace, table and key, and holds a JSON value
// and the token of the event that last wrote it. Keys sort byte-wise.
// Namespaces, tables and keys are non-empty, valid UTF-8 without NUL or
// other control characters (events.IsControl: Unicode's Cc, C1 controls
// included, and U+2028 and U+2029; see ValidateRowAddress for rows an
// earlier version stored), of at most MaxRowNamespaceLength,
// MaxRowTableLength and MaxRowKeyLength bytes; values are valid JSON of at
// most events.DefaultMaxPayloadBytes. Anything else is refused with
// ErrInvalidRow before it reaches the database.
//
// Through a Unit (Unit.Rows) reads see the unit's own writes, and writes take
// effect when it commits. Through a Source (Source.Rows) reads see committed
// rows and each write commits by itself; locks are refused there.
type Rows interface {
	// Get returns the row, and false when there is none. With a lock, the
	// row is protected until the unit ends: on PostgreSQL by SELECT ...
	// FOR SHARE / FOR UPDATE (other units wait), in memory by checking at
	// commit that it did not change (ErrConflict otherwise). Memory
	// protects a row's absence too; PostgreSQL locks only rows that exist,
	// so two units may both find a row absent and both write it, the later
	// commit winning. To make creating a row exclusive on both stores,
	// write a marker row at an address of its own first and then Get the
	// marker with a lock (that sends the write): a second unit's write of
	// the marker waits for the first unit to end, and its locked reads
	// after it see what the first committed. The saga engine claims an
	// instance id that way.
	Get(ctx context.Context, ns, table, key string, lock Lock) (Row, bool, error)
	// List returns rows of one table in key order, after q.After, with
	// keys starting with q.Prefix, at most q.Limit (DefaultRowLimit when 0).
	List(ctx context.Context, ns, table string, q RowQuery) ([]Row, error)
	// Put stores value under the key, with tok as the row's token.
	Put(ctx context.Context, ns, table, key string, value json.RawMessage, tok events.Token) error
	// Delete removes the row; a missing row is not an error.
	Delete(ctx context.Context, ns, table, key string) error
	// Prefetch reads the rows at addrs with lock, in one round trip, so a
	// unit that is about to Get many rows pays for one read instead of one
	// per row: a handler at the head of a unit reading the rows of every
	// event in it (UnitEvents), say. Later Gets in the same unit of a
	// prefetched row, with at most the lock it was read with, send no
	// statement: they answer the unit's own writes since, or what the
	// Prefetch read (in memory, where a Get costs nothing, they read the
	// row again). The lock is held as a Get's would be. So on PostgreSQL
	// such a Get does not see a row another unit inserted after the
	// Prefetch, which no lock prevents, nor, after a Prefetch without a
	// lock, another unit's later change: prefetch again to look again. A
	// unit's reads of a row never go back: once a locked Get or a List
	// has read a row anew, Gets answer that. Prefetched rows stop
	// answering when the unit's transaction is handed out for SQL of the
	// caller's own (pgstore.TxFromContext), after DeleteNamespace, and
	// after an append hook fails.
	// Outside a unit it validates addrs and does nothing, and refuses a
	// lock.
	Prefetch(ctx context.Context, lock Lock, addrs ...RowAddress) error
	// DeleteNamespace deletes up to limit rows of namespace ns and returns
	// how many it deleted: call it until it returns fewer than limit, each
	// call in a short transaction of its own, so dropping a large read
	// model never holds the feed back for long.
	DeleteNamespace(ctx context.Context, ns string, limit int) (int, error)
}

// Lock is how a Rows.Get inside a unit protects what it read.
type Lock int

const (
	// LockNone reads without protection.
	LockNone Lock = iota
	// LockShare lets other units read the row with LockShare but makes a
	// unit that reads it with LockUpdate wait (PostgreSQL) or conflict
	// (memory).
	LockShare
	// LockUpdate excludes every other locked read of the row.
	LockUpdate
)

// RowAddress names a row: the arguments of Rows.Get.
type RowAddress struct {
	Namespace, Table, Key string
}

// Row is one stored row.
type Row struct {
	Key   string
	Value json.RawMessage
	// Token is the position of the event that last wrote the row.
	Token events.Token
}

// RowQuery pages through a table (Rows.List).
type RowQuery struct {
	// Prefix keeps keys starting with it. Defaults to "" (every key).
	Prefix string
	// After starts after this key. Defaults to "" (the first key).
	After string
	// Limit caps the rows returned. Defaults to DefaultRowLimit.
	Limit int
	// Desc lists in descending key order (After then means before).
	Desc bool
}

// Limits of row addresses, in bytes, and the default page size.
const (
	MaxRowNamespaceLength = 200
	MaxRowTableLength     = 63
	MaxRowKeyLength       = 1024
	DefaultRowLimit       = 1000
)

// ErrInvalidRow is wrapped by every error about a bad row address, value
// or query: nothing was read or written.
var ErrInvalidRow = errors.New("feed: invalid row")

// AppendHook runs inside appends made through a store that has it (see
// HookedSource): strong projections use it to update their read models in
// the append's own unit. An append made outside any unit runs in a unit of
// its own when a hook wants one of its events.
type AppendHook interface {
	// Wants reports whether the hook must see an append of events with
	// these stored type names. Appends it does not want skip it at no cost.
	Wants(types []string) bool
	// Before runs in the unit before the events are stored and returns the
	// events to store: it may add metadata (a new slice, the caller's is
	// left alone).
	Before(ctx context.Context, u Unit, streamID string, evs []events.Event) ([]events.Event, error)
	// After runs in the unit once the events are stored, with their
	// envelopes in order. It is not called for a retry of an append that
	// is already stored (AppendResult.AlreadyStored): the hooks ran in the
	// unit that stored it.
	After(ctx context.Context, u Unit, envs []events.Envelope) error
}

// HookedSource is a Source whose appends run AppendHooks. An error from a
// hook fails the append and undoes it and the hook's writes, and only them:
// a unit the append ran in stays usable.
type HookedSource interface {
	Source
	// AddAppendHook installs h on every later append, through the store or
	// through its units, until remove is called.
	AddAppendHook(h AppendHook) (remove func())
}

// MarkScanner is a Unit that finds, on its own connection, the events an
// append hook left to a consumer: a hook that applies events inline must
// not apply one ahead of older events the consumer has still to apply,
// or the consumer would apply those after it, out of feed order. Both
// stores' units implement it.
type MarkScanner interface {
	// Unmarked returns, in feed order, up to limit events after `after`
	// whose stored type is one of types and whose AppliedMarksKey marks do
	// not name mark: the events committed when it runs and the unit's own
	// appends. limit <= 0 means events.DefaultReadLimit.
	Unmarked(ctx context.Context, after events.Token, types []string, mark string, limit int) ([]events.Envelope, error)
	// PositionsNow reads checkpoint positions as Unit.Positions does, but
	// a move after the read does not fail the unit's commit in memory: for
	// a reader that only needs to know how far a consumer had come.
	PositionsNow(ctx context.Context, names ...string) ([]events.Token, error)
	// OrderAfter makes the unit's later appends come after tok in the
	// feed. A hook that applies events in the order appends take its lock
	// needs the feed in that order too: on PostgreSQL a transaction's
	// events are placed by its id, taken at its first write, so a unit that
	// wrote before another began but appends after it took the lock would
	// come first. Its later events are placed after tok instead (the
	// per-stream rule that keeps a stream's events in order, applied to
	// tok). Memory places events as they are appended and does nothing.
	OrderAfter(ctx context.Context, tok events.Token) error
}

// Marked reports whether env's AppliedMarksKey marks name mark.
func Marked(env events.Envelope, mark string) bool {
	for m := range strings.FieldsSeq(env.Metadata.Extra[events.AppliedMarksKey]) {
		if m == mark {
			return true
		}
	}
	return false
}
