package consistency_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/projections"
)

// awaitPush waits for a store's listener to reach the wanted state.
func awaitPush(t *testing.T, st *pgstore.Store, want bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	require.NoError(t, st.WaitPushHealthy(ctx, want))
}

// TestWaitsSurviveListenConnectionLoss kills the web process's LISTEN
// connection mid-run: a checkpoint moved by another process meanwhile is
// still seen (by the fallback poll), and after the reconnect waits are
// woken by push again.
func TestWaitsSurviveListenConnectionLoss(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, nil)
	// A long reconnect delay keeps the listener down long enough to prove
	// the fallback does the work.
	web, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, ListenReconnectDelay: 3 * time.Second})
	require.NoError(t, err)
	defer web.Close()
	other, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	defer other.Close()
	awaitPush(t, web, true)

	tr, err := consistency.NewTracker(&consistency.TrackerConfig{
		Positions:        web.Checkpoints(),
		Watcher:          web,
		PushHealthy:      web.PushHealthy,
		FallbackInterval: 50 * time.Millisecond,
	})
	require.NoError(t, err)
	require.NoError(t, tr.Start(ctx))
	defer func() { require.NoError(t, tr.Stop(ctx)) }()

	// moveCheckpoint commits a consumer's checkpoint from "another process".
	lease, err := other.Checkpoints().Acquire(ctx, "view", "other-process", time.Minute)
	require.NoError(t, err)
	moveCheckpoint := func(stream string) events.Token {
		t.Helper()
		res, err := other.Append(ctx, stream, events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
		require.NoError(t, err)
		unit, err := other.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, unit.Commit(ctx, feed.Move{Lease: lease, Position: res.Token}))
		return res.Token
	}

	var killed int
	require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
		"converge-listen-"+db.Schema).Scan(&killed))
	require.Equal(t, 1, killed)
	awaitPush(t, web, false)

	tok := moveCheckpoint("s-1")
	wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	st, err := tr.Wait(wctx, tok, "view")
	cancel()
	require.NoError(t, err)
	require.False(t, st.Stale, "the fallback poll must see the move while push is down")

	awaitPush(t, web, true)
	tok = moveCheckpoint("s-2")
	wctx, cancel = context.WithTimeout(ctx, 2*time.Second)
	st, err = tr.Wait(wctx, tok, "view")
	cancel()
	require.NoError(t, err)
	require.False(t, st.Stale, "after the reconnect, push wakes the wait")
}

type placed struct {
	OrderID string `json:"order_id"`
}

// TestHTTPReadYourWritesEndToEnd runs the seed's flow over real HTTP, with
// a real projection, on both stores: the POST answers with the write's
// token, the GET sends it back and is answered only once the projection
// has the order, labelled fresh.
func TestHTTPReadYourWritesEndToEnd(t *testing.T) {
	t.Parallel()
	for name, newStore := range newTestStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg := events.NewRegistry()
			events.Register[placed](reg, "test.order_placed")
			st := newStore(t, reg)
			// A deadline a loaded machine cannot hit while the projection
			// starts: this test is about the answer, not the latency.
			tr, err := consistency.NewTracker(&consistency.TrackerConfig{
				Positions: st.Checkpoints(), Watcher: st, PushHealthy: st.PushHealthy,
				DefaultTimeout: 30 * time.Second, MaxTimeout: 30 * time.Second,
			})
			require.NoError(t, err)
			require.NoError(t, tr.Start(t.Context()))
			defer func() { require.NoError(t, tr.Stop(context.Background())) }()

			p := projections.New("orders", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e placed) error {
				return tx.Table("orders").Put(ctx, e.OrderID, e)
			})
			runner, err := projections.NewRunner(&projections.RunnerConfig{Source: st, Projections: []*projections.Projection{p}, Tracker: tr})
			require.NoError(t, err)
			require.NoError(t, runner.Start(t.Context()))
			defer func() { require.NoError(t, runner.Stop(context.Background())) }()

			mux := http.NewServeMux()
			mux.HandleFunc("POST /orders/{id}", func(w http.ResponseWriter, r *http.Request) {
				res, err := st.Append(r.Context(), "order-"+r.PathValue("id"), events.NoStream, events.Event{Data: placed{OrderID: r.PathValue("id")}})
				if err != nil {
					http.Error(w, err.Error(), http.StatusConflict)
					return
				}
				consistency.SetPosition(w, res.Token)
				w.WriteHeader(http.StatusAccepted)
			})
			mux.Handle("GET /orders/{id}", consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"orders"}})(
				http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					o, ok, err := projections.Get[placed](r.Context(), runner.View("orders").Table("orders"), r.PathValue("id"))
					switch {
					case err != nil:
						http.Error(w, err.Error(), http.StatusInternalServerError)
					case !ok:
						http.NotFound(w, r)
					default:
						_ = json.NewEncoder(w).Encode(o)
					}
				})))
			srv := httptest.NewServer(mux)
			defer srv.Close()

			for i := range 5 {
				id := fmt.Sprintf("o-%d", i)
				resp, err := srv.Client().Post(srv.URL+"/orders/"+id, "application/json", nil)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				require.Equal(t, http.StatusAccepted, resp.StatusCode)
				tok := resp.Header.Get(consistency.HeaderPosition)
				require.NotEmpty(t, tok)

				req, err := http.NewRequest(http.MethodGet, srv.URL+"/orders/"+id, nil)
				require.NoError(t, err)
				req.Header.Set(consistency.HeaderPosition, tok)
				resp, err = srv.Client().Do(req)
				require.NoError(t, err)
				body, err := io.ReadAll(resp.Body)
				require.NoError(t, resp.Body.Close())
				require.NoError(t, err)
				require.Equal(t, http.StatusOK, resp.StatusCode, "read-your-write must find the order: %s", body)
				require.Equal(t, "false", resp.Header.Get(consistency.HeaderStale))
				got, err := events.ParseToken(resp.Header.Get(consistency.HeaderPosition))
				require.NoError(t, err)
				want, err := events.ParseToken(tok)
				require.NoError(t, err)
				require.False(t, got.Before(want), "the read reflects at least the write")
				require.JSONEq(t, fmt.Sprintf(`{"order_id":%q}`, id), string(body))
			}
		})
	}
}

// newTestStores builds each store the tests here run on.
var newTestStores = map[string]func(t *testing.T, reg *events.Registry) testStore{
	"memory": func(t *testing.T, reg *events.Registry) testStore {
		t.Helper()
		st, err := memstore.New(&memstore.Config{Registry: reg})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	},
	"postgres": func(t *testing.T, reg *events.Registry) testStore {
		t.Helper()
		db := pgtest.New(t, nil)
		st, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	},
}

// TestReadStaleStillAnswers waits for a position the projection never
// reaches, under a short deadline: the wait ends stale when the deadline
// passes, and the query, a read-model read that honours its context, must
// still answer, flagged stale.
func TestReadStaleStillAnswers(t *testing.T) {
	t.Parallel()
	for name, newStore := range newTestStores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			reg := events.NewRegistry()
			events.Register[placed](reg, "test.order_placed")
			st := newStore(t, reg)
			tr, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: st.Checkpoints(), Watcher: st, PushHealthy: st.PushHealthy})
			require.NoError(t, err)
			require.NoError(t, tr.Start(t.Context()))
			defer func() { require.NoError(t, tr.Stop(context.Background())) }()

			p := projections.New("orders", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e placed) error {
				return tx.Table("orders").Put(ctx, e.OrderID, e)
			})
			runner, err := projections.NewRunner(&projections.RunnerConfig{Source: st, Projections: []*projections.Projection{p}, Tracker: tr})
			require.NoError(t, err)
			require.NoError(t, runner.Start(t.Context()))
			defer func() { require.NoError(t, runner.Stop(context.Background())) }()

			res, err := st.Append(t.Context(), "order-1", events.NoStream, events.Event{Data: placed{OrderID: "o-1"}})
			require.NoError(t, err)
			query := func(ctx context.Context) (placed, error) {
				if err := ctx.Err(); err != nil {
					return placed{}, err // memory's read ignores ctx; PostgreSQL's does not
				}
				o, _, err := projections.Get[placed](ctx, runner.View("orders").Table("orders"), "o-1")
				return o, err
			}
			// A deadline of the test's own: under load the projection can
			// take longer than the tracker's default wait (2s).
			fctx, fcancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer fcancel()
			fresh, err := consistency.Read(fctx, tr, res.Token, []string{"orders"}, query)
			require.NoError(t, err)
			require.False(t, fresh.Stale)
			require.Equal(t, "o-1", fresh.Value.OrderID)

			// A position past anything written: the wait can only end stale,
			// at ctx's deadline.
			ahead := events.MakeToken(res.Token.Major()+1<<20, 0)
			ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
			defer cancel()
			stale, err := consistency.Read(ctx, tr, ahead, []string{"orders"}, query)
			require.NoError(t, err, "a stale wait must still answer")
			require.True(t, stale.Stale)
			require.Equal(t, "o-1", stale.Value.OrderID)
			require.ErrorIs(t, ctx.Err(), context.DeadlineExceeded, "the wait's deadline had passed when the query ran")
		})
	}
}

// testStore is what both stores offer the tracker and the runner.
type testStore interface {
	events.Store
	feed.Source
	feed.CheckpointWatcher
}
