package command_test

import (
	"context"
	"math/rand/v2"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

type store interface {
	events.Store
	feed.Source
}

// stores are the stores the conflict test runs on.
var stores = map[string]storeMaker{
	"memory": func(t *testing.T, reg *events.Registry) store {
		t.Helper()
		s, err := memstore.New(&memstore.Config{Registry: reg})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	},
	"postgres": func(t *testing.T, reg *events.Registry) store {
		t.Helper()
		db := pgtest.New(t, nil)
		s, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	},
}

// runIn runs command.Run for env in a unit of its own, as a delivery
// would, and commits it.
func runIn(t *testing.T, s store, env events.Envelope, d command.Decide[Deposit, int]) command.Result {
	t.Helper()
	res, err := tryRunIn(t, s, env, d)
	require.NoError(t, err)
	return res
}

// tryRunIn is runIn for a delivery that may fail: the unit commits only
// when Run succeeds, and Run's error is returned.
func tryRunIn(t *testing.T, s store, env events.Envelope, d command.Decide[Deposit, int]) (command.Result, error) {
	t.Helper()
	ctx := context.Background()
	u, err := s.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	// The message a feed delivery would carry.
	msg, err := feed.MessageFromEnvelope(env)
	require.NoError(t, err)
	uctx := cqrs.CtxWithOriginalMessage(u.Context(events.ContextWithUnit(ctx, u)), msg)
	var c Deposit
	require.NoError(t, command.Marshaler{Registry: s.Registry()}.Unmarshal(msg, &c))
	res, err := command.Run(uctx, s, balance, "account-"+c.Account, c, d)
	if err == nil {
		err = u.Commit(ctx)
	}
	if err != nil {
		_ = u.Rollback(ctx) // a unit left open would hold the store up
	}
	return res, err
}

// TestRunRetriesAVersionConflictThenReportsItsFirstResult: another writer
// appends to the aggregate's stream after the handler loaded it and
// before it appended. The append conflicts, Run decides again on the
// state that includes the other write, and appends once, after it; every
// later redelivery of the command appends nothing, decides nothing and
// reports that first result.
func TestRunRetriesAVersionConflictThenReportsItsFirstResult(t *testing.T) {
	t.Parallel()
	eachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		ctx := context.Background()
		reg := registry(t)
		s := mk(t, reg)
		cmd := sent(t, s, "process-7", Deposit{Account: "a", Amount: 30})

		var calls atomic.Int32
		var seen []int
		racing := func(_ context.Context, b int, c Deposit) ([]any, error) {
			seen = append(seen, b)
			if calls.Add(1) == 1 {
				// Another process deposits between this load and append.
				if _, err := s.Append(ctx, "account-a", events.AnyVersion, events.Event{Data: Deposited{Amount: 5}}); err != nil {
					return nil, err
				}
			}
			return []any{Deposited{Amount: c.Amount}}, nil
		}
		first := runIn(t, s, cmd, racing)
		require.Equal(t, []int{0, 5}, seen, "decided again on the state with the other write")
		got, err := s.ReadStream(ctx, "account-a", 1, 0)
		require.NoError(t, err)
		require.Len(t, got, 2)
		require.Equal(t, int64(2), got[1].Version, "appended after the other write")
		require.Equal(t, first.EventIDs, []string{got[1].ID})
		require.Equal(t, cmd.ID, got[1].Metadata.CausationID)

		for range 3 { // redeliveries
			require.Equal(t, first, runIn(t, s, cmd, racing), "a redelivered command reports its first result")
		}
		require.Equal(t, int32(2), calls.Load(), "and decides nothing again")
		got, err = s.ReadStream(ctx, "account-a", 1, 0)
		require.NoError(t, err)
		require.Len(t, got, 2, "and appends nothing")
	})
}

// sent appends c as sender's command, as a saga step would, and returns
// it as stored.
func sent(t *testing.T, s store, sender string, c Deposit) events.Envelope {
	t.Helper()
	ctx := context.Background()
	stream := command.StreamFor("account.deposit", sender)
	res, err := s.Append(ctx, stream, events.AnyVersion, events.Event{Data: c, Metadata: events.Metadata{CorrelationID: sender}})
	require.NoError(t, err)
	envs, err := s.ReadStream(ctx, stream, res.LastVersion, 1)
	require.NoError(t, err)
	return envs[0]
}

// storeMaker makes one of the stores the tests run on.
type storeMaker = func(t *testing.T, reg *events.Registry) store

// eachStoreSeeded runs body on each store in a parallel subtest, each
// with its own random source from one seed, logged so a failure can be
// replayed.
func eachStoreSeeded(t *testing.T, body func(t *testing.T, mk storeMaker, rng *rand.Rand)) {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	eachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body
		body(t, mk, rand.New(rand.NewPCG(seed, 5)))
	})
}

// eachStore runs body on each store in a parallel subtest.
func eachStore(t *testing.T, body func(t *testing.T, mk storeMaker)) {
	t.Helper()
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			body(t, mk)
		})
	}
}
