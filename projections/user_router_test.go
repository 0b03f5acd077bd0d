package projections_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// userRouter is an application's router with the runner's projections
// mounted on it (AddHandlers), running; seen counts the messages its
// middleware saw.
type userRouter struct {
	router *message.Router
	seen   atomic.Int64
	done   chan error // what Run returned
}

// mountAndRun mounts r's projections on a new router, starts r and runs
// the router. The router is closed when the test ends, after r is stopped.
func mountAndRun(t *testing.T, r *projections.Runner) *userRouter {
	t.Helper()
	router, err := message.NewRouter(message.RouterConfig{}, nil)
	require.NoError(t, err)
	u := &userRouter{router: router, done: make(chan error, 1)}
	router.AddMiddleware(func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			u.seen.Add(1)
			return h(msg)
		}
	})
	require.NoError(t, r.AddHandlers(router))
	require.NoError(t, r.Start(context.Background()))
	t.Cleanup(func() {
		stop(t, r)
		_ = router.Close()
	})
	go func() { u.done <- router.Run(context.Background()) }()
	select {
	case <-router.Running():
	case err := <-u.done:
		t.Fatalf("the router stopped before running: %v", err)
	}
	return u
}

// requireRunning checks that the router has not closed.
func (u *userRouter) requireRunning(t *testing.T) {
	t.Helper()
	select {
	case err := <-u.done:
		t.Fatalf("the application's router closed (its Run returned %v)", err)
	default:
	}
	require.False(t, u.router.IsClosed(), "the application's router closed")
}

// appliedNames is an upsert-style projection (Reset's use) that counts
// the applications of each event.
type appliedNames struct {
	mu sync.Mutex
	n  map[string]int
}

func (a *appliedNames) projection(name string, cfg *projections.Config) *projections.Projection {
	p := projections.New(name, cfg)
	projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Renamed) error {
		if err := tx.Table("names").Put(ctx, e.Account, e.Name); err != nil {
			return err
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		if a.n == nil {
			a.n = map[string]int{}
		}
		a.n[env.ID]++
		return nil
	})
	return p
}

func (a *appliedNames) of(eventID string) int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n[eventID]
}

// TestResetOfProjectionOnUserRouter: Reset of a projection mounted on the
// application's router (AddHandlers) pauses its processor rather than
// stopping it. So the reset takes the leases the processor gave back
// (rather than failing with feed.ErrLeaseHeld against this very
// process), the events after the token are applied again through the
// application's router (its middleware sees them), and that router keeps
// running even when the projection is its only handler (Watermill closes
// a router whose handlers have all stopped).
func TestResetOfProjectionOnUserRouter(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			for _, alone := range []bool{true, false} {
				name := "beside-another-handler"
				if alone {
					name = "only-handler"
				}
				t.Run(name, func(t *testing.T) {
					t.Parallel()
					testResetOfProjectionOnUserRouter(t, b.setup(t), alone)
				})
			}
		})
	}
}

func testResetOfProjectionOnUserRouter(t *testing.T, f *fixture, alone bool) {
	t.Helper()
	ctx := context.Background()
	var applied appliedNames
	projs := []*projections.Projection{applied.projection("mounted_reset", nil)}
	if !alone {
		projs = append(projs, applied.projection("mounted_beside", nil))
	}
	r := f.newRunner(t, projections.RunnerConfig{Projections: projs})
	u := mountAndRun(t, r)
	first := f.append(t, "acct-a", Renamed{"a", "ada"})
	second := f.append(t, "acct-a", Renamed{"a", "ann"})
	f.waitFor(t, second.Token, "mounted_reset")
	seen := u.seen.Load()

	require.NoError(t, r.Reset(ctx, "mounted_reset", first.Token))
	third := f.append(t, "acct-a", Renamed{"a", "zoe"})
	f.awaitStored(t, "mounted_reset", third.Token)
	require.GreaterOrEqual(t, applied.of(second.EventIDs[0]), 2, "the event after the token was not applied again")
	require.GreaterOrEqual(t, applied.of(third.EventIDs[0]), 1)
	require.GreaterOrEqual(t, u.seen.Load()-seen, int64(2), "the reset projection is no longer delivered through the application's router")
	u.requireRunning(t)
	requireRows(t, r.View("mounted_reset").Table("names"), map[string]string{"a": "zoe"})
}

// TestStopReleasesLeasesOfProjectionsOnUserRouter: Stop "releases their
// leases so another process takes over at once" and "returns when
// everything has stopped" for projections mounted on the application's
// router too: when it returns, every partition's consumer has released
// its lease (OnLeaseChange heard it), and another owner takes each lease
// at once.
func TestStopReleasesLeasesOfProjectionsOnUserRouter(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			var mu sync.Mutex
			released := map[string]bool{}
			sub := &feed.SubscriberConfig{
				// A lease left to expire would hold the test up for good.
				LeaseTTL: time.Minute,
				OnLeaseChange: func(ev feed.LeaseEvent) {
					if ev.Kind == feed.LeaseReleased {
						mu.Lock()
						released[ev.Consumer] = true
						mu.Unlock()
					}
				},
			}
			var applied appliedNames
			split := applied.projection("mounted_stop", &projections.Config{Partitions: 2})
			beside := applied.projection("mounted_stop_beside", nil)
			r := f.newRunner(t, projections.RunnerConfig{
				Projections: []*projections.Projection{split, beside},
				Subscriber:  sub,
			})
			mountAndRun(t, r)
			var last events.AppendResult
			for _, acct := range []string{"a", "b", "c", "d"} {
				last = f.append(t, "acct-"+acct, Renamed{acct, "x"})
			}
			f.waitFor(t, last.Token, "mounted_stop", "mounted_stop_beside")

			stop(t, r)
			checkpoints := append(split.CheckpointNames(), beside.CheckpointNames()...)
			mu.Lock()
			for _, cp := range checkpoints {
				require.True(t, released[cp], "Stop returned before the consumer of %s released its lease", cp)
			}
			mu.Unlock()
			for _, cp := range checkpoints {
				l, err := f.source.Checkpoints().Acquire(ctx, cp, "another-process", time.Minute)
				require.NoError(t, err, "the lease of %s is still held after Stop returned", cp)
				require.NoError(t, f.source.Checkpoints().Release(ctx, l))
			}
		})
	}
}

// TestRebuildBeforeTheUserRouterRuns: a lone process that mounts its
// projections on its own router, starts the runner and rebuilds before it
// runs the router (a migration at start) gets its rebuild: the live
// processor, not running yet, knows nothing of other processes, and the
// runner acts alone (it waited for the live processor's first heartbeat,
// which never came, and the Rebuild hung).
func TestRebuildBeforeTheUserRouterRuns(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			f.append(t, "acct-a", Deposited{"a", 10})
			r := f.newRunner(t, projections.RunnerConfig{
				Projections: []*projections.Projection{balances("router_later", nil)},
			})
			router, err := message.NewRouter(message.RouterConfig{}, nil)
			require.NoError(t, err)
			require.NoError(t, r.AddHandlers(router))
			require.NoError(t, r.Start(context.Background()))
			done := make(chan struct{})
			t.Cleanup(func() {
				stop(t, r)
				_ = router.Close()
				<-done
			})
			ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
			defer cancel()
			require.NoError(t, r.Rebuild(ctx, "router_later"), "the rebuild did not complete before the router ran")
			a, ok := account(t, r, "router_later", "a")
			require.True(t, ok)
			require.Equal(t, 10, a.Balance)
			// Run the router now, as the application would, so it closes
			// as a router that ran.
			go func() { _ = router.Run(context.Background()); close(done) }()
			<-router.Running()
		})
	}
}
