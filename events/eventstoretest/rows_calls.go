package eventstoretest

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// rowsCall is a call of a feed.Rows method, with good or bad arguments.
type rowsCall struct {
	what string
	call func(ctx context.Context, rw feed.Rows) error
}

// randomControl returns a control character events.IsControl refuses
// beyond the C0 controls and DEL: a C1 control (U+0080–U+009F, U+0085
// among them) or the line or paragraph separator U+2028 or U+2029.
func randomControl(r *rand.Rand) rune {
	return []rune{rune(0x80 + r.IntN(0x20)), '\u2028', '\u2029'}[r.IntN(3)]
}

// withControl returns good (ASCII) with randomControl inserted at a random
// position: first, last or anywhere between.
func withControl(r *rand.Rand, good string) string {
	at := r.IntN(len(good) + 1)
	return good[:at] + string(randomControl(r)) + good[at:]
}

// randomRowText returns a namespace, table or key: good (a plain name)
// half of the time, else one feed.ValidateRowAddress refuses.
func randomRowText(r *rand.Rand, good string, limit int) string {
	if r.IntN(2) == 0 {
		return good
	}
	at := r.IntN(len(good) + 1)
	var bad string
	switch r.IntN(5) {
	case 0:
		return ""
	case 1:
		return strings.Repeat("x", limit+1+r.IntN(10))
	case 2: // a C0 control or DEL
		bad = string([]rune{rune(r.IntN(0x20)), 0x7f}[r.IntN(2)])
	case 3:
		bad = string(randomControl(r))
	default: // not UTF-8
		bad = []string{"\xff", "\xc3", "\xed\xa0\x80", "\xe2\x82"}[r.IntN(4)]
	}
	return good[:at] + bad + good[at:]
}

// randomRowAddress returns an address, good or bad (randomRowText).
func randomRowAddress(r *rand.Rand) feed.RowAddress {
	return feed.RowAddress{
		Namespace: randomRowText(r, "ns", feed.MaxRowNamespaceLength),
		Table:     randomRowText(r, "t", feed.MaxRowTableLength),
		Key:       randomRowText(r, fmt.Sprintf("k-%d", r.IntN(100)), feed.MaxRowKeyLength),
	}
}

// randomLock returns a lock, known or not.
func randomLock(r *rand.Rand) feed.Lock {
	return []feed.Lock{feed.LockNone, feed.LockShare, feed.LockUpdate, feed.Lock(7), feed.Lock(-1)}[r.IntN(5)]
}

// randomRowsCall returns a call of a random feed.Rows method with random
// arguments, good or bad: an ended unit's rows refuse every one of them
// with events.ErrUnitEnded.
func randomRowsCall(r *rand.Rand) rowsCall {
	a := randomRowAddress(r)
	switch r.IntN(6) {
	case 0:
		lock := randomLock(r)
		return rowsCall{fmt.Sprintf("Get(%q, %q, %q, lock %d)", a.Namespace, a.Table, a.Key, lock), func(ctx context.Context, rw feed.Rows) error {
			_, _, err := rw.Get(ctx, a.Namespace, a.Table, a.Key, lock)
			return err
		}}
	case 1:
		value := []json.RawMessage{json.RawMessage(`{"n":1}`), json.RawMessage(`null`), nil, json.RawMessage(`{`), json.RawMessage(`"\u0000"`), json.RawMessage(`{"a":1,"a":2}`)}[r.IntN(6)]
		tok := []events.Token{{}, events.MakeToken(1, 0), events.MakeToken(1<<63+r.Uint64N(1<<63), 1)}[r.IntN(3)]
		return rowsCall{fmt.Sprintf("Put(%q, %q, %q, %q, %s)", a.Namespace, a.Table, a.Key, value, tok), func(ctx context.Context, rw feed.Rows) error {
			return rw.Put(ctx, a.Namespace, a.Table, a.Key, value, tok)
		}}
	case 2:
		return rowsCall{fmt.Sprintf("Delete(%q, %q, %q)", a.Namespace, a.Table, a.Key), func(ctx context.Context, rw feed.Rows) error {
			return rw.Delete(ctx, a.Namespace, a.Table, a.Key)
		}}
	case 3:
		q := []feed.RowQuery{{}, {Limit: -1}, {Prefix: "\x00"}, {After: "\xff"}, {Prefix: "k", Desc: true, Limit: 3}}[r.IntN(5)]
		return rowsCall{fmt.Sprintf("List(%q, %q, %+v)", a.Namespace, a.Table, q), func(ctx context.Context, rw feed.Rows) error {
			_, err := rw.List(ctx, a.Namespace, a.Table, q)
			return err
		}}
	case 4:
		lock := randomLock(r)
		addrs := make([]feed.RowAddress, r.IntN(4)) // none, too
		for i := range addrs {
			addrs[i] = randomRowAddress(r)
		}
		return rowsCall{fmt.Sprintf("Prefetch(lock %d, %q)", lock, addrs), func(ctx context.Context, rw feed.Rows) error {
			return rw.Prefetch(ctx, lock, addrs...)
		}}
	}
	limit := []int{1000, 1, 0, -1}[r.IntN(4)]
	return rowsCall{fmt.Sprintf("DeleteNamespace(%q, %d)", a.Namespace, limit), func(ctx context.Context, rw feed.Rows) error {
		_, err := rw.DeleteNamespace(ctx, a.Namespace, limit)
		return err
	}}
}
