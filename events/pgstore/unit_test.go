package pgstore_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
)

// randomKey returns a key of 1 to 40 runes drawn from ASCII, Latin-1 and
// CJK, so multi-byte UTF-8 is hashed too.
func randomKey(r *rand.Rand) string {
	var b strings.Builder
	for range 1 + r.IntN(40) {
		switch r.IntN(3) {
		case 0:
			b.WriteRune(rune(0x21 + r.IntN(0x5e)))
		case 1:
			b.WriteRune(rune(0xa1 + r.IntN(0x5e)))
		default:
			b.WriteRune(rune(0x4e00 + r.IntN(0x5000)))
		}
	}
	return b.String()
}

// The SQL formula in feed.PartitionOf's doc computes what PartitionOf
// computes, for any key and count.
func TestPartitionFormulaMatchesGo(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 2)
	r := rand.New(rand.NewPCG(1, 2))
	keys := make([]string, 2000)
	for i := range keys {
		keys[i] = randomKey(r)
	}
	for _, count := range []int{2, 3, 7, 64, 1000, feed.MaxPartitions} {
		rows, err := b.db.Pool.Query(t.Context(),
			`SELECT (('x' || substr(md5(k), 1, 8))::bit(32)::int & 2147483647) % $2 FROM unnest($1::text[]) WITH ORDINALITY AS u(k, i) ORDER BY i`,
			keys, count)
		require.NoError(t, err)
		got, err := pgx.CollectRows(rows, pgx.RowTo[int])
		require.NoError(t, err)
		for i, k := range keys {
			require.Equal(t, feed.PartitionOf(k, count), got[i], "key %q, count %d", k, count)
		}
	}
}

// The store's partition filter puts random streams where PartitionOf says,
// every event in exactly one partition.
func TestPartitionFilterMatchesGo(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	r := rand.New(rand.NewPCG(3, 4))
	const n = 60
	for i := range n {
		ev := events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}}
		if i%2 == 0 {
			ev.Metadata.CorrelationID = randomKey(r)
		}
		_, err := b.store.Append(ctx, fmt.Sprintf("%s-%d", randomKey(r), i), events.NoStream, ev)
		require.NoError(t, err)
	}
	require.Len(t, readAtLeast(t, b.store, n), n)
	for _, key := range []feed.PartitionKey{feed.ByStream, feed.ByCorrelation} {
		const count = 5
		seen := 0
		for index := range count {
			batch, err := b.store.ReadFeed(ctx, events.Token{}, feed.Filter{Partition: feed.Partition{Index: index, Count: count, Key: key}}, 0)
			require.NoError(t, err)
			for _, env := range batch.Events {
				require.Equal(t, index, feed.PartitionOf(feed.KeyOf(key, env), count), "key %s: %q", key, feed.KeyOf(key, env))
			}
			seen += len(batch.Events)
		}
		require.Equal(t, n, seen, "key %s: every event in exactly one partition", key)
	}
}

// A unit takes a transaction id only at its first write: a handler that
// reads (or waits) before writing holds nothing back.
func TestUnitTakesAnXidOnlyWhenItWrites(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 4)
	ctx := t.Context()
	u, err := b.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	defer func() { require.NoError(t, u.Rollback(ctx)) }()
	uctx := u.Context(ctx)
	_, err = u.StreamVersion(uctx, "a-1")
	require.NoError(t, err)
	_, _, err = u.Rows().Get(uctx, "ns", "t", "k", feed.LockNone)
	require.NoError(t, err)

	tx, err := pgstore.TxFromContext(uctx)
	require.NoError(t, err)
	var pid int32
	require.NoError(t, tx.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	// Asked from another connection, as a monitor (HorizonAge) sees it.
	xid := func() *string {
		var x *string
		require.NoError(t, b.db.Pool.QueryRow(ctx, `SELECT backend_xid::text FROM pg_stat_activity WHERE pid = $1`, pid).Scan(&x))
		return x
	}
	require.Nil(t, xid(), "a begun unit that has not written holds no transaction id")
	_, err = u.Append(uctx, "a-1", events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)
	require.NotNil(t, xid(), "the first append takes one")

	again, err := pgstore.TxFromContext(uctx)
	require.NoError(t, err)
	require.Same(t, tx, again, "the unit has one transaction")
	_, err = pgstore.TxFromContext(ctx)
	require.ErrorIs(t, err, pgstore.ErrNoUnit)
}
