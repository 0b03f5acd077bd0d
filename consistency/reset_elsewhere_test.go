package consistency_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestResetElsewhereReachesEveryTracker: a read model reset by one
// process (its checkpoint committed back to an earlier position) is no
// longer reported caught up by another process's Tracker, which knew the
// later position: the watcher's report of the lower position is checked
// against the store, which is believed. A wait for a token between the two
// positions is then stale until the replay passes it again.
func TestResetElsewhereReachesEveryTracker(t *testing.T) {
	t.Parallel()
	type world struct {
		writer feed.Source // the process that resets
		reader interface {
			feed.Source
			feed.CheckpointWatcher
		}
	}
	worlds := map[string]func(t *testing.T) world{
		"memory": func(t *testing.T) world {
			t.Helper()
			st, err := memstore.New(nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() })
			return world{writer: st, reader: st}
		},
		"postgres": func(t *testing.T) world {
			t.Helper()
			db := pgtest.New(t, nil)
			writer, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema})
			require.NoError(t, err)
			t.Cleanup(func() { _ = writer.Close() })
			reader, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema})
			require.NoError(t, err)
			t.Cleanup(func() { _ = reader.Close() })
			awaitPush(t, reader, true)
			return world{writer: writer, reader: reader}
		},
	}
	for name, mk := range worlds {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			w := mk(t)
			tr, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: w.reader.Checkpoints(), Watcher: w.reader})
			require.NoError(t, err)
			require.NoError(t, tr.Start(ctx))
			t.Cleanup(func() { _ = tr.Stop(context.Background()) })

			cps := w.writer.Checkpoints()
			lease, err := cps.Acquire(ctx, "view", "writer", time.Minute)
			require.NoError(t, err)
			commit := func(pos events.Token) {
				t.Helper()
				u, err := cps.Begin(ctx)
				require.NoError(t, err)
				require.NoError(t, u.Commit(ctx, feed.Move{Lease: lease, Position: pos}))
			}
			late, mid, early := events.MakeToken(9, 200), events.MakeToken(9, 150), events.MakeToken(9, 50)
			commit(late)
			st, err := tr.Wait(ctx, late, "view")
			require.NoError(t, err)
			require.False(t, st.Stale, "the reader's tracker learned the late position")

			commit(early) // the reset, in the writer's process
			require.Eventually(t, func() bool {
				pos, ok := tr.Position("view")
				return ok && pos == early
			}, 30*time.Second, 5*time.Millisecond, "the reader's tracker still says the view is at %s", late)
			wctx, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
			defer cancel()
			st, err = tr.Wait(wctx, mid, "view")
			require.NoError(t, err)
			require.True(t, st.Stale, "a read model reset behind the token is not reported caught up")

			commit(mid) // the replay passes the token again
			st, err = tr.Wait(ctx, mid, "view")
			require.NoError(t, err)
			require.False(t, st.Stale)
		})
	}
}

// blockingPositions answers Position with pos once release is closed,
// saying on asked that a read has started.
type blockingPositions struct {
	asked   chan struct{}
	release chan struct{}
	pos     events.Token
}

func (b *blockingPositions) Position(ctx context.Context, _ string) (events.Token, error) {
	close(b.asked)
	select {
	case <-b.release:
		return b.pos, nil
	case <-ctx.Done():
		return events.Token{}, ctx.Err()
	}
}

// TestReadInFlightDoesNotUndoAReset: a durable read that started before a
// Reset answers with the position from before it; the tracker drops that
// answer rather than move the checkpoint forward again over the reset.
func TestReadInFlightDoesNotUndoAReset(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	reader := &blockingPositions{asked: make(chan struct{}), release: make(chan struct{}), pos: events.MakeToken(1, 200)}
	tr, err := consistency.NewTracker(&consistency.TrackerConfig{Positions: reader})
	require.NoError(t, err)
	learned := make(chan error, 1)
	go func() { learned <- tr.Learn(ctx, "view") }()
	<-reader.asked
	tr.Reset("view", events.MakeToken(1, 50))
	close(reader.release)
	require.NoError(t, <-learned)
	pos, ok := tr.Position("view")
	require.True(t, ok)
	require.Equal(t, events.MakeToken(1, 50), pos, "the read from before the reset was dropped")
}
