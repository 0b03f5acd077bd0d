package pgstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Tests hand their schemas on instead of migrating one each.
		goleak.Cleanup(pgtest.ReuseSchemas()),
		// pgxpool's background health check ends shortly after Close.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
		// A connection dropped mid-query (a cancelled context, a cut by the
		// fault proxy) is closed in the background, bounded by pgx.
		goleak.IgnoreAnyFunction("github.com/jackc/pgx/v5/pgconn.(*PgConn).asyncClose.func1"),
		// A message given up when its subscription ended (Watermill's
		// universal tests leave some unanswered) rolls its unit back once
		// its holder answers, or after LeaseTTL: on a goroutine that can
		// outlive the last test by up to that long.
		goleak.IgnoreTopFunction("github.com/converge-es/converge/events/feed.(*consumer).abandon.func1"),
	)
}

type bundle struct {
	store *pgstore.Store
	db    *pgtest.DB
}

func setup(t *testing.T, reg *events.Registry, maxConns int32) bundle {
	t.Helper()
	db := pgtest.New(t, &pgtest.Config{MaxConns: maxConns})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	return bundle{store: st, db: db}
}
