package projections_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// TestRequestedResetOfSharedPartitions: a requested reset of a partitioned
// projection whose partitions two processes share is made, although no
// process holds every partition's lease: every runner running it pauses
// its processor while the request is unfinished, so the one that took it
// can take every lease. The events after the token are applied again,
// each exactly once (counted in a table written in the event's own unit,
// so only committed applications count), and both processes deliver
// again afterwards.
func TestRequestedResetOfSharedPartitions(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			mk := func() *projections.Projection {
				p := projections.New("split_latest", &projections.Config{Partitions: 4})
				projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Renamed) error {
					applied := tx.Table("applied")
					n, _, err := projections.Get[int](ctx, applied, env.ID)
					if err != nil {
						return err
					}
					if err := applied.Put(ctx, env.ID, n+1); err != nil {
						return err
					}
					return tx.Table("names").Put(ctx, e.Account, e.Name)
				})
				return p
			}
			cfg := func() projections.RunnerConfig {
				return projections.RunnerConfig{Projections: []*projections.Projection{mk()}, StatusPollInterval: 50 * time.Millisecond}
			}
			r1 := f.start(t, cfg())
			r2 := f.start(t, cfg())
			var ids []string
			var toks []events.Token
			for i := range 8 {
				res := f.append(t, "acct-"+accountName(i%4), Renamed{accountName(i % 4), fmt.Sprint("n-", i)})
				ids, toks = append(ids, res.EventIDs[0]), append(toks, res.Token)
			}
			f.waitHead(t, "split_latest")
			bothHold := func() bool {
				s1, err1 := r1.Status(ctx, "split_latest")
				s2, err2 := r2.Status(ctx, "split_latest")
				return err1 == nil && err2 == nil && s1.Consumer.Lease == feed.LeaseHolding && s2.Consumer.Lease == feed.LeaseHolding
			}
			require.Eventually(t, bothHold, waitTimeout, 10*time.Millisecond, "both processes hold a partition")

			q, err := projections.RequestReset(ctx, f.source, "split_latest", toks[3])
			require.NoError(t, err)
			done := awaitRequest(t, f, "split_latest", q.ID)
			require.Equal(t, projections.RequestDone, done.State, done.Error)

			// Every partition replays what it has after the token: the
			// partitions of accounts 0..3 each hold one event after toks[3].
			want := map[string]int{}
			for i, id := range ids {
				want[id] = 1
				if i > 3 {
					want[id] = 2
				}
			}
			applied := func() map[string]int {
				got := map[string]int{}
				for _, row := range snapshot(t, r1, "split_latest", "applied") {
					var n int
					require.NoError(t, row.Decode(&n))
					got[row.Key] = n
				}
				return got
			}
			require.Eventually(t, func() bool {
				got := applied()
				for id, n := range want {
					if got[id] < n {
						return false
					}
				}
				return true
			}, waitTimeout, 10*time.Millisecond, "the events after the token are applied again")
			names := map[string]string{}
			for i := range 4 {
				names[accountName(i)] = fmt.Sprint("n-", i+4)
			}
			requireRows(t, r2.View("split_latest").Table("names"), names)

			// Both processes deliver again, and a new request is taken.
			require.Eventually(t, bothHold, waitTimeout, 10*time.Millisecond, "both processes hold a partition again")
			next := f.append(t, "acct-"+accountName(0), Renamed{accountName(0), "after"})
			f.waitFor(t, next.Token, "split_latest")
			requireRows(t, r1.View("split_latest").Table("names"), map[string]string{accountName(0): "after"})
			// Every partition is past the replay now: nothing was applied a
			// third time.
			want[next.EventIDs[0]] = 1
			require.Equal(t, want, applied(), "the events after the token were applied again, once each")
			q, err = projections.RequestReset(ctx, f.source, "split_latest", next.Token)
			require.NoError(t, err)
			done = awaitRequest(t, f, "split_latest", q.ID)
			require.Equal(t, projections.RequestDone, done.State, done.Error)
		})
	}
}

// TestResetRequestOfADeadRunnerPausesNothingForEver: the runners follow a
// reset request's state in the store. While one taken by a runner that
// died is fresh, the others keep their processors paused (the dead runner
// might still be making it); once it is finished they deliver again, and
// once its claim is stale one of them takes it over and makes it.
func TestResetRequestOfADeadRunnerPausesNothingForEver(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			cfg := func() projections.RunnerConfig {
				p := projections.New("split_dead", &projections.Config{Partitions: 2})
				projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Renamed) error {
					return tx.Table("names").Put(ctx, e.Account, e.Name)
				})
				return projections.RunnerConfig{Projections: []*projections.Projection{p}, StatusPollInterval: 20 * time.Millisecond}
			}
			r1 := f.start(t, cfg())
			r2 := f.start(t, cfg())
			first := f.append(t, "acct-a", Renamed{"a", "ada"})
			f.waitHead(t, "split_dead")
			lease := func(r *projections.Runner) feed.LeaseState {
				s, err := r.Status(ctx, "split_dead")
				require.NoError(t, err)
				return s.Consumer.Lease
			}
			delivering := func() bool { return lease(r1) == feed.LeaseHolding && lease(r2) == feed.LeaseHolding }
			paused := func() bool { return lease(r1) != feed.LeaseHolding && lease(r2) != feed.LeaseHolding }
			require.Eventually(t, delivering, waitTimeout, 5*time.Millisecond, "both processes hold a partition")

			// A reset taken by a runner that died just now. Written as taken
			// in one go: requested first, a live runner may take it before
			// the test marks it the dead runner's.
			q := deadRunnersReset("dead-1", events.Token{}, time.Now().UTC())
			putRequest(t, f, q)
			require.Eventually(t, paused, waitTimeout, 5*time.Millisecond, "the runners pause for the unfinished reset")
			q.State, q.Error, q.UpdatedAt = projections.RequestFailed, "given up", time.Now().UTC()
			putRequest(t, f, q)
			require.Eventually(t, delivering, waitTimeout, 5*time.Millisecond, "the runners deliver again once it is finished")

			// One whose claim is stale is taken over and made.
			q = deadRunnersReset("dead-2", first.Token, time.Now().UTC().Add(-time.Hour))
			putRequest(t, f, q)
			done := awaitRequest(t, f, "split_dead", q.ID)
			require.Equal(t, projections.RequestDone, done.State, done.Error)
			require.NotEqual(t, "dead-runner", done.Owner)
			require.Eventually(t, delivering, waitTimeout, 5*time.Millisecond, "the runners deliver again after the reset")
			next := f.append(t, "acct-a", Renamed{"a", "ann"})
			f.waitFor(t, next.Token, "split_dead")
			requireRows(t, r1.View("split_dead").Table("names"), map[string]string{"a": "ann"})
		})
	}
}

// deadRunnersReset is a reset request of split_dead to tok, taken at
// taken by a runner that died since.
func deadRunnersReset(id string, tok events.Token, taken time.Time) projections.Request {
	return projections.Request{
		ID: id, Projection: "split_dead", Op: projections.OpReset, To: tok,
		State: projections.RequestRunning, Owner: "dead-runner", RequestedAt: taken, UpdatedAt: taken,
	}
}

// putRequest writes q over the stored request, as a runner does.
func putRequest(t *testing.T, f *fixture, q projections.Request) {
	t.Helper()
	b, err := json.Marshal(q)
	require.NoError(t, err)
	require.NoError(t, f.source.Rows().Put(context.Background(), feed.RuntimeNamespace, projections.RequestsTable, q.Projection, b, events.Token{}))
}
