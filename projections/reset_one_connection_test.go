package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/projections"
)

// TestResetOnAPoolOfOneConnection: "any pool works, down to one
// connection". A Reset read the feed's head on a second connection while
// its unit held the only one (and the projection's state row): it waited
// for ever, and its open transaction held every reader of the server back.
func TestResetOnAPoolOfOneConnection(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	cfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	cfg.MaxConns = 1
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	s, err := pgstore.New(context.Background(), pool, &pgstore.Config{Schema: db.Schema, Registry: newRegistry(), Logger: quiet})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	f := &fixture{backend: "postgres", store: s, source: s, db: db}
	f.tracker = newTracker(t, s.Checkpoints(), s, s.PushHealthy)

	r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("one_conn", nil)}})
	n := 1 + rand.IntN(6)
	var last events.Token
	for i := range n {
		last = f.append(t, fmt.Sprintf("acct-%d", i%2), Deposited{fmt.Sprint(i % 2), 1}).Token
	}
	f.waitFor(t, last, "one_conn")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	require.NoError(t, r.Reset(ctx, "one_conn", events.Token{}), "a reset on a pool of one connection")
	f.awaitStored(t, "one_conn", last)
}
