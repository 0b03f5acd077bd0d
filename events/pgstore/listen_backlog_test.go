package pgstore_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
)

// TestFailedBacklogStepReconnects: when a part of the listener's backlog
// step fails on a connection that works, push neither reports healthy on
// that connection nor stays down on it: the connection is closed and
// opened again, the whole step runs again, and push comes back healthy.
// The stored positions are announced, the hello is said, and moves and
// appends made afterwards are pushed.
//
//   - announce: the query that re-announces the checkpoints after a
//     reconnect fails (rewinds missed meanwhile would stay unannounced);
//   - hello: the hello fails (stores that skip NOTIFYs while nobody else
//     listens might not notify this one).
func TestFailedBacklogStepReconnects(t *testing.T) {
	t.Parallel()
	for _, part := range []string{"announce", "hello"} {
		t.Run(part, func(t *testing.T) {
			t.Parallel()
			ctx := t.Context()
			a := setup(t, nil, 6)
			st := a.store
			awaitHealthy(t, st, true)
			// Another process, which does not listen: what st hears of it comes
			// by NOTIFY.
			other, err := pgstore.New(ctx, a.db.Pool, &pgstore.Config{Schema: a.db.Schema, DisableListen: true})
			require.NoError(t, err)
			defer other.Close()

			type move struct {
				name string
				pos  events.Token
			}
			moves := make(chan move, 64)
			stopWatching := st.WatchCheckpoints(func(name string, pos events.Token) {
				select {
				case moves <- move{name, pos}:
				default:
				}
			})
			defer stopWatching()
			awaitMove := func(want move, what string) {
				t.Helper()
				timeout := time.After(10 * time.Second)
				for {
					select {
					case m := <-moves:
						if m == want {
							return
						}
					case <-timeout:
						t.Fatalf("%s: %s never reached the watcher", what, want.name)
					}
				}
			}
			advance := func(name string, pos events.Token) {
				t.Helper()
				l, err := other.Checkpoints().Acquire(ctx, name, "the-test", time.Minute)
				require.NoError(t, err)
				require.NoError(t, other.Checkpoints().Advance(ctx, l, pos))
			}

			// A checkpoint stored before the outage, heard of by push.
			before := move{"before", events.MakeToken(7, 0)}
			advance(before.name, before.pos)
			awaitMove(before, "push before the outage")

			// Hellos are heard by a plain listener.
			listener, err := pgx.Connect(ctx, a.db.URL)
			require.NoError(t, err)
			defer listener.Close(context.WithoutCancel(ctx))
			_, err = listener.Exec(ctx, "LISTEN "+pgx.Identifier{pgstore.NotifyChannel}.Sanitize())
			require.NoError(t, err)

			fault := pgstore.FailListenBacklog(st, part)
			var killed int
			require.NoError(t, a.db.Pool.QueryRow(ctx,
				`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1`,
				"converge-listen-"+a.db.Schema).Scan(&killed))
			require.Equal(t, 1, killed)

			select {
			case <-fault.Failed:
			case <-time.After(15 * time.Second):
				t.Fatal("the listener did not reconnect after its connection was killed")
			}
			require.False(t, fault.HealthyWhenFailed, "push reported healthy before the backlog step succeeded")
			// What the failed step announced (watchers are called in the
			// step, before it failed) must not count for the step that
			// succeeds: drop it.
			for drained := false; !drained; {
				select {
				case <-moves:
				default:
					drained = true
				}
			}
			select {
			case <-fault.Retried:
			case <-time.After(15 * time.Second):
				t.Fatalf("the backlog step failed at %s and never ran again: push stays down on a working connection", part)
			}
			awaitHealthy(t, st, true)

			// The step that succeeded re-announced the stored position and said
			// hello.
			awaitMove(before, "the re-announce")
			hello := "h:" + a.db.Schema + ":"
			for {
				wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				n, err := listener.WaitForNotification(wctx)
				cancel()
				require.NoError(t, err, "no hello after the listener recovered")
				if strings.HasPrefix(n.Payload, hello) {
					break
				}
			}

			// Push works: a move and an append of the other process reach st.
			after := move{"after", events.MakeToken(9, 0)}
			advance(after.name, after.pos)
			awaitMove(after, "push after the recovery")
			wake := st.Wake()
			_, err = other.Append(ctx, "after-1", events.NoStream, raw(1))
			require.NoError(t, err)
			select {
			case <-wake:
			case <-time.After(10 * time.Second):
				t.Fatal("an append after the recovery did not wake the listener's store")
			}
			require.True(t, st.PushHealthy())
		})
	}
}
