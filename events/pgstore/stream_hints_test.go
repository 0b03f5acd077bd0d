package pgstore_test

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
)

// appendTracer records the append statements a pool runs: "create" for
// the upsert of a stream's head row, "move" for the update.
type appendTracer struct {
	mu  sync.Mutex
	ran []string
}

func (a *appendTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, d pgx.TraceQueryStartData) context.Context {
	kind := ""
	switch {
	case strings.Contains(d.SQL, `"streams" AS st (stream_id`):
		kind = "create"
	case strings.Contains(d.SQL, `UPDATE`) && strings.Contains(d.SQL, `"streams" AS st`):
		kind = "move"
	}
	if kind != "" {
		a.mu.Lock()
		a.ran = append(a.ran, kind)
		a.mu.Unlock()
	}
	return ctx
}

func (*appendTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

func (a *appendTracer) take() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := a.ran
	a.ran = nil
	return out
}

// TestAnyVersionAppendSendsOneStatement: an AnyVersion append in a unit
// to a stream the store has not seen sends the upsert alone, and one to a
// stream it has seen the update alone; when the guess is wrong (the
// stream's creator rolled back) the update moves nothing and the upsert
// follows. Versions are right in every case, also for a stream another
// store created. Append by itself keeps the update first.
func TestAnyVersionAppendSendsOneStatement(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 2)
	ctx := t.Context()
	tr := &appendTracer{}
	pcfg, err := pgxpool.ParseConfig(b.db.URL)
	require.NoError(t, err)
	pcfg.ConnConfig.RuntimeParams["search_path"] = b.db.Schema
	pcfg.ConnConfig.Tracer = tr
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	st, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: b.db.Schema, DisableListen: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	ev := events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}}
	// appendAny appends in a unit, as a saga step sends a command.
	appendAny := func(stream string, want int64) []string {
		t.Helper()
		u, err := st.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = u.Rollback(context.Background()) }()
		res, err := u.Append(ctx, stream, events.AnyVersion, ev)
		require.NoError(t, err)
		require.Equal(t, want, res.LastVersion, stream)
		require.NoError(t, u.Commit(ctx))
		return tr.take()
	}

	require.Equal(t, []string{"create"}, appendAny("new-1", 1), "a new stream: the upsert alone")
	require.Equal(t, []string{"move"}, appendAny("new-1", 2), "a stream seen: the update alone")

	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	_, err = st.AppendTx(ctx, tx, "undone-1", events.AnyVersion, ev)
	require.NoError(t, err)
	require.NoError(t, tx.Rollback(ctx))
	tr.take()
	require.Equal(t, []string{"move", "create"}, appendAny("undone-1", 1), "seen, but its creator rolled back")

	_, err = b.store.Append(ctx, "elsewhere-1", events.AnyVersion, ev, ev)
	require.NoError(t, err)
	require.Equal(t, []string{"create"}, appendAny("elsewhere-1", 3), "created by another store: the upsert moves it on")
	require.Equal(t, []string{"move"}, appendAny("elsewhere-1", 4))

	// Append by itself keeps the update first.
	_, err = st.Append(ctx, "plain-1", events.AnyVersion, ev)
	require.NoError(t, err)
	require.Equal(t, []string{"move", "create"}, tr.take(), "Append to a new stream: the update, then the upsert")
}
