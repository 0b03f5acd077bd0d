package consistency_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestRewindElsewhereWhileListenIsDownReadsStale: another process rewinds a
// read model's checkpoint (as its Runner.Reset does) while this process's
// LISTEN connection is down, so the announcement is lost. Reads of a token
// past the rewound position must then read stale, not fresh from the
// position the tracker knew. Two ways must notice: with a long outage, the
// tracker's fallback loop, which reads the known names while push is down;
// with a short one and a fallback loop too slow to run meanwhile, the
// store, which announces every checkpoint again when it listens again.
func TestRewindElsewhereWhileListenIsDownReadsStale(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		reconnect time.Duration // the listener's delay before it reconnects
		fallback  time.Duration // the tracker's fallback interval
	}{
		{"long outage, fallback loop", time.Minute, 20 * time.Millisecond},
		{"short outage, announced at reconnect", 50 * time.Millisecond, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			db := pgtest.New(t, nil)
			web, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, ListenReconnectDelay: tc.reconnect})
			require.NoError(t, err)
			defer web.Close()
			other, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
			require.NoError(t, err)
			defer other.Close()
			awaitPush(t, web, true)
			tr, err := consistency.NewTracker(&consistency.TrackerConfig{
				Positions: web.Checkpoints(), Watcher: web, PushHealthy: web.PushHealthy,
				FallbackInterval: tc.fallback,
			})
			require.NoError(t, err)
			require.NoError(t, tr.Start(ctx))
			defer func() { require.NoError(t, tr.Stop(context.WithoutCancel(ctx))) }()

			// The read model is at a random position past its rewind.
			lease, err := other.Checkpoints().Acquire(ctx, "view", "other-process", time.Minute)
			require.NoError(t, err)
			old := events.MakeToken(1, uint64(100+rand.IntN(1000)))
			u, err := other.Checkpoints().Begin(ctx)
			require.NoError(t, err)
			require.NoError(t, u.Commit(ctx, feed.Move{Lease: lease, Position: old}))
			st, err := tr.Wait(ctx, old, "view")
			require.NoError(t, err)
			require.False(t, st.Stale)

			var killed int
			require.NoError(t, db.Pool.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
				"converge-listen-"+db.Schema).Scan(&killed))
			require.Equal(t, 1, killed)
			awaitPush(t, web, false)
			// Rewound while nobody here listens: no announcement reaches
			// this process.
			rewound := events.MakeToken(1, uint64(rand.IntN(int(old.Minor()))))
			_, err = db.Pool.Exec(ctx, fmt.Sprintf(`UPDATE %q.checkpoints SET major = $1, minor = $2 WHERE name = 'view'`, db.Schema),
				int64(rewound.Major()), int64(rewound.Minor()))
			require.NoError(t, err)

			require.Eventually(t, func() bool {
				pos, ok := tr.Position("view")
				return ok && pos == rewound
			}, 10*time.Second, 5*time.Millisecond, "the tracker learns of the rewind")
			wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			st, err = tr.Wait(wctx, old, "view")
			cancel()
			require.NoError(t, err)
			require.True(t, st.Stale, "a token past the rewound position reads stale")
			require.Equal(t, rewound, st.Checkpoint)
		})
	}
}
