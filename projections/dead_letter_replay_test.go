package projections_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/projections"
)

// poisoned is a set of event ids a handler fails on while broken. ids is
// filled before the runner starts, and only read after.
type poisoned struct {
	ids    map[string]bool
	broken atomic.Bool
}

func (p *poisoned) fails(id string) bool { return p.broken.Load() && p.ids[id] }

// ledger is a projection over deposits that counts, per account and per
// event, what it applied: an event applied twice, or not at all, shows.
func ledger(name string, partitions int, poison *poisoned) *projections.Projection {
	p := projections.New(name, &projections.Config{Partitions: partitions})
	projections.On(p, func(ctx context.Context, tx *projections.Tx, env events.Envelope, e Deposited) error {
		if poison.fails(env.ID) {
			return errors.New("poison pill")
		}
		accts := tx.Table("accounts")
		a, _, err := projections.Get[Account](ctx, accts, e.Account)
		if err != nil {
			return err
		}
		a.Balance += e.Amount
		a.Count++
		if err := accts.Put(ctx, e.Account, a); err != nil {
			return err
		}
		applied := tx.Table("applied")
		n, _, err := projections.Get[int](ctx, applied, env.ID)
		if err != nil {
			return err
		}
		return applied.Put(ctx, env.ID, n+1)
	})
	return p
}

// TestReplayDeadLettersOfAPartitionedProjection: the dead letters of a
// projection split into partitions carry the checkpoint of the partition
// that gave up on them, as the runtime stores it, and Runner.RequestReplay
// has each applied, once, after the handler is fixed. It refuses a dead
// letter of a projection the runner does not have, one whose checkpoint is
// not its projection's (another projection's dead letter under that key is
// left alone), one already replayed, and any after Stop.
func TestReplayDeadLettersOfAPartitionedProjection(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			testReplayDeadLetters(t, b, seed)
		})
	}
}

func testReplayDeadLetters(t *testing.T, b backendCase, seed uint64) {
	t.Helper()
	ctx := context.Background()
	f := b.setup(t)
	rng := rand.New(rand.NewPCG(seed, uint64(len(b.name))))
	parts := 2 + rng.IntN(3)
	const name, other = "replayed", "replayed_other"

	// Appended before the runner starts, so the poisoned ids are known
	// before any delivery.
	type deposit struct {
		id string
		e  Deposited
	}
	var all []deposit
	poison := &poisoned{ids: map[string]bool{}}
	poison.broken.Store(true)
	for i := range 24 + rng.IntN(16) {
		e := Deposited{accountName(rng.IntN(8)), 1 + rng.IntN(100)}
		res := f.append(t, e.Account, e)
		all = append(all, deposit{res.EventIDs[0], e})
		if i == 0 || rng.IntN(4) == 0 {
			poison.ids[res.EventIDs[0]] = true
		}
	}
	t.Logf("%d partitions, %d events, %d poisoned", parts, len(all), len(poison.ids))

	var (
		reportedMu sync.Mutex
		reported   = map[string]projections.DeadLetter{} // of name, by event id
	)
	r := f.start(t, projections.RunnerConfig{
		Projections: []*projections.Projection{ledger(name, parts, poison), ledger(other, 1, poison)},
		MaxAttempts: 1,
		OnFailure:   projections.DeadLetterOnFailure,
		OnDeadLetter: func(dl projections.DeadLetter) {
			if dl.Projection == name {
				reportedMu.Lock()
				reported[dl.EventID] = dl
				reportedMu.Unlock()
			}
		},
	})
	f.waitHead(t, name, other)

	dls, err := r.DeadLetters(ctx, name)
	require.NoError(t, err)
	require.Len(t, dls, len(poison.ids))
	recs, err := feed.ListDeadLetters(ctx, f.source.Rows(), name, 0)
	require.NoError(t, err)
	stored := map[string]string{} // checkpoint by event id
	for _, rec := range recs {
		stored[rec.Event.ID] = rec.Checkpoint
	}
	checkpoints := map[string]bool{}
	reportedMu.Lock()
	for _, dl := range dls {
		require.True(t, poison.ids[dl.EventID], "dead letter of a sound event %s", dl.EventID)
		require.NotEmpty(t, dl.Checkpoint, "event %s", dl.EventID)
		require.Equal(t, stored[dl.EventID], dl.Checkpoint, "the listed checkpoint of event %s is the runtime's", dl.EventID)
		require.Equal(t, dl.Checkpoint, reported[dl.EventID].Checkpoint, "OnDeadLetter reported event %s with the same checkpoint", dl.EventID)
		checkpoints[dl.Checkpoint] = true
	}
	reportedMu.Unlock()
	t.Logf("dead letters in %d of %d partitions", len(checkpoints), parts)
	others, err := r.DeadLetters(ctx, other)
	require.NoError(t, err)
	require.Len(t, others, len(poison.ids))
	for _, dl := range others {
		require.Equal(t, other, dl.Checkpoint, "an unsplit projection's checkpoint is its name")
	}

	// Refused, and nothing requested: while the handler is broken, a
	// request carried out would fail and be recorded as failed.
	unknown := dls[0]
	unknown.Projection = "nowhere"
	_, err = r.RequestReplay(ctx, unknown)
	require.ErrorIs(t, err, projections.ErrUnknownProjection)
	// other's dead letter is stored under this key: replayed, it would go
	// through other's handler, not name's.
	foreign := others[0]
	foreign.Projection = name
	_, err = r.RequestReplay(ctx, foreign)
	require.ErrorIs(t, err, projections.ErrForeignDeadLetter)
	for _, cp := range []string{"", other, name + "@rebuild-2", feed.PartitionName(name+"x", 0, parts), name + "#9/2"} {
		bad := dls[0]
		bad.Checkpoint = cp
		_, err = r.RequestReplay(ctx, bad)
		require.ErrorIs(t, err, projections.ErrForeignDeadLetter, "checkpoint %q", cp)
	}
	gone := dls[0]
	gone.EventID = "no-such-event"
	_, err = r.RequestReplay(ctx, gone)
	require.ErrorIs(t, err, feed.ErrNoDeadLetter)
	for _, key := range []string{dls[0].Checkpoint + "/" + dls[0].EventID, foreign.Checkpoint + "/" + foreign.EventID} {
		_, ok, err := feed.ReadReplay(ctx, f.source.Rows(), key)
		require.NoError(t, err)
		require.False(t, ok, "a refused replay recorded %s", key)
	}

	poison.broken.Store(false)
	for _, dl := range dls {
		req, err := r.RequestReplay(ctx, dl)
		require.NoError(t, err)
		require.Equal(t, dl.Checkpoint+"/"+dl.EventID, req.Key)
		require.Equal(t, dl.Checkpoint, req.Checkpoint)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		left, err := r.DeadLetters(ctx, name)
		require.NoError(t, err)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var failed []string
			for _, dl := range left {
				if req, ok, _ := feed.ReadReplay(ctx, f.source.Rows(), dl.Checkpoint+"/"+dl.EventID); ok && req.Failed != "" {
					failed = append(failed, req.Failed)
				}
			}
			t.Fatalf("%d of %d dead letters were not replayed (failed: %v)", len(left), len(dls), failed)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Each event applied once, the replayed ones included.
	want := map[string]Account{}
	for _, d := range all {
		a := want[d.e.Account]
		a.Balance += d.e.Amount
		a.Count++
		want[d.e.Account] = a
	}
	got := map[string]Account{}
	for _, row := range snapshot(t, r, name, "accounts") {
		var a Account
		require.NoError(t, row.Decode(&a))
		got[row.Key] = a
	}
	require.Equal(t, want, got, "seed %d", seed)
	applied := snapshot(t, r, name, "applied")
	require.Len(t, applied, len(all))
	for _, row := range applied {
		var n int
		require.NoError(t, row.Decode(&n))
		require.Equal(t, 1, n, "event %s", row.Key)
	}
	others, err = r.DeadLetters(ctx, other)
	require.NoError(t, err)
	require.Len(t, others, len(poison.ids), "only the replays requested were made")

	_, err = r.RequestReplay(ctx, dls[0])
	require.ErrorIs(t, err, feed.ErrNoDeadLetter, "replayed already")
	stop(t, r)
	_, err = r.RequestReplay(ctx, others[0])
	require.ErrorIs(t, err, projections.ErrStopped)
	_, ok, err := feed.ReadReplay(ctx, f.source.Rows(), others[0].Checkpoint+"/"+others[0].EventID)
	require.NoError(t, err)
	require.False(t, ok, "the stopped runner recorded a replay")
}
