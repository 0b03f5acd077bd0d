package consistency_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/faultproxy"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestAWaitFindsAMoveWhoseNotificationWasLost: the projection's process
// commits a checkpoint move and its connection is cut before the NOTIFY
// goes out, which pgstore never sends again. The web process's push stays
// healthy throughout, so nothing tells its tracker of the move; a wait for
// it must still end fresh, from the fallback loop's read, well before its
// deadline, although the model never moves again.
func TestAWaitFindsAMoveWhoseNotificationWasLost(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, nil)

	web, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema})
	require.NoError(t, err)
	defer web.Close()
	awaitPush(t, web, true)
	// What the tracker was told of push, every time it asked.
	var pushDown atomic.Bool
	healthy := func() bool {
		ok := web.PushHealthy()
		if !ok {
			pushDown.Store(true)
		}
		return ok
	}
	const interval = 20 * time.Millisecond
	tr := setup(t, &consistency.TrackerConfig{
		Positions: web.Checkpoints(), Watcher: web, PushHealthy: healthy,
		FallbackInterval: interval,
	})

	// The projection's process reaches the database through a proxy that
	// loses its NOTIFY.
	pcfg, err := pgxpool.ParseConfig(db.URL)
	require.NoError(t, err)
	proxy := faultproxy.New(t, net.JoinHostPort(pcfg.ConnConfig.Host, fmt.Sprint(pcfg.ConnConfig.Port)))
	pcfg.ConnConfig.Host, pcfg.ConnConfig.Port = proxy.Host(), proxy.Port()
	pcfg.ConnConfig.TLSConfig, pcfg.ConnConfig.Fallbacks = nil, nil
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	require.NoError(t, err)
	defer pool.Close()
	// Quiet: the NOTIFY it fails to send is logged, as it should be.
	writer, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: db.Schema, DisableListen: true, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	defer writer.Close()

	const name = "view-lost-notify"
	lease, err := writer.Checkpoints().Acquire(ctx, name, "writer", time.Minute)
	require.NoError(t, err)
	commit := func(pos events.Token) {
		t.Helper()
		u, err := writer.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		require.NoError(t, u.Commit(u.Context(ctx), feed.Move{Lease: lease, Position: pos}))
	}
	appendOne := func(stream string) events.Token {
		t.Helper()
		res, err := web.Append(ctx, stream, events.NoStream, events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
		require.NoError(t, err)
		return res.Token
	}
	wait := func(target events.Token, timeout time.Duration) consistency.Status {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, timeout)
		defer cancel()
		st, err := tr.Wait(wctx, target, name)
		require.NoError(t, err)
		return st
	}

	// In step first: the tracker knows where the name stands.
	first := appendOne("s-1")
	commit(first)
	st := wait(first, 5*time.Second)
	require.False(t, st.Stale, "%+v", st)

	// Only the NOTIFY's payload ends in ":"+name.
	lost := appendOne("s-2")
	fired := proxy.Inject(faultproxy.Fault{DropRequest: true, Match: faultproxy.Contains(":" + name)})
	commit(lost)
	within(t, fired, "the NOTIFY was never sent")
	stored, err := web.Checkpoints().Position(ctx, name)
	require.NoError(t, err)
	require.Equal(t, lost, stored, "the move itself committed")

	// 100 intervals: without a read the wait ends stale at its deadline.
	st = wait(lost, 100*interval)
	require.False(t, st.Stale, "the store holds %s, but the wait read stale: %+v", stored, st)
	t.Logf("fresh after %s", st.Waited)
	require.False(t, pushDown.Load(), "push was healthy every time the tracker asked")
	require.True(t, web.PushHealthy())
}
