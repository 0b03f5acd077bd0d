package pgstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// BenchmarkUnitLockedReads reads 50 rows with LockUpdate in a unit and
// rolls it back: each by its own Get ("gets"), or all by one Prefetch
// before the same Gets ("prefetch"), as a saga's unit of 50 events reads
// its instances. Run with
//
//	go test ./events/pgstore -run '^$' -bench UnitLockedReads
func BenchmarkUnitLockedReads(b *testing.B) {
	ctx := context.Background()
	db := pgtest.New(b, nil)
	st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, Registry: events.NewRegistry()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	const n = 50
	addrs := make([]feed.RowAddress, n)
	for i := range addrs {
		addrs[i] = feed.RowAddress{Namespace: "bench", Table: "instances", Key: fmt.Sprintf("order-%03d", i)}
		if err := st.Rows().Put(ctx, "bench", "instances", addrs[i].Key, json.RawMessage(`{"status": "running"}`), events.Token{}); err != nil {
			b.Fatal(err)
		}
	}
	for _, prefetch := range []bool{false, true} {
		name := "gets"
		if prefetch {
			name = "prefetch"
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				u, err := st.Checkpoints().Begin(ctx)
				if err != nil {
					b.Fatal(err)
				}
				if prefetch {
					if err := u.Rows().Prefetch(ctx, feed.LockUpdate, addrs...); err != nil {
						b.Fatal(err)
					}
				}
				for _, a := range addrs {
					if _, ok, err := u.Rows().Get(ctx, a.Namespace, a.Table, a.Key, feed.LockUpdate); err != nil || !ok {
						b.Fatal(ok, err)
					}
				}
				if err := u.Rollback(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
