package memstore_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

func TestInspector(t *testing.T) {
	t.Parallel()
	s, b := setup(t)
	ctx := t.Context()
	var ins feed.Inspector = s

	_, ok, err := ins.OldestAfter(ctx, events.Token{})
	require.NoError(t, err)
	require.False(t, ok, "no events yet")

	ev := events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}}
	first, err := s.Append(ctx, "s-1", events.NoStream, ev)
	require.NoError(t, err)
	recorded := b.clock.Now().Truncate(time.Microsecond)
	b.clock.Advance(time.Second)
	res, err := s.Append(ctx, "s-2", events.NoStream, events.Event{Data: ev.Data}, events.Event{Data: ev.Data})
	require.NoError(t, err)

	head, err := ins.Head(ctx)
	require.NoError(t, err)
	require.Equal(t, res.Token, head)
	n, err := ins.CountBetween(ctx, events.Token{}, head)
	require.NoError(t, err)
	require.Equal(t, int64(3), n)
	n, err = ins.CountBetween(ctx, first.Token, res.Tokens[0])
	require.NoError(t, err)
	require.Equal(t, int64(1), n, "after is excluded, upTo included")
	n, err = ins.CountBetween(ctx, head, first.Token)
	require.NoError(t, err)
	require.Zero(t, n, "an empty range")

	at, ok, err := ins.OldestAfter(ctx, events.Token{})
	require.NoError(t, err)
	require.True(t, ok)
	require.Equal(t, recorded, at)
	_, ok, err = ins.OldestAfter(ctx, head)
	require.NoError(t, err)
	require.False(t, ok)

	age, err := ins.HorizonAge(ctx)
	require.NoError(t, err)
	require.Zero(t, age)
	open, err := s.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	age, err = ins.HorizonAge(ctx)
	require.NoError(t, err)
	require.Zero(t, age, "a unit that has not appended holds nothing back")
	_, err = open.Append(ctx, "s-3", events.NoStream, events.Event{Data: ev.Data})
	require.NoError(t, err)
	b.clock.Advance(3 * time.Second)
	age, err = ins.HorizonAge(ctx)
	require.NoError(t, err)
	require.Equal(t, 3*time.Second, age, "an open unit's reserved token holds the feed back")
	require.NoError(t, open.Rollback(ctx))
	age, err = ins.HorizonAge(ctx)
	require.NoError(t, err)
	require.Zero(t, age)

	cps := s.Checkpoints()
	l, err := cps.Acquire(ctx, "b-consumer", "owner-1", time.Minute)
	require.NoError(t, err)
	b.clock.Advance(time.Second)
	u, err := cps.Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, u.Commit(ctx, feed.Move{Lease: l, Position: first.Token}))
	committedAt := b.clock.Now()
	l2, err := cps.Acquire(ctx, "a-consumer", "owner-2", time.Minute)
	require.NoError(t, err)
	require.NoError(t, cps.Release(ctx, l2))

	infos, err := ins.Consumers(ctx)
	require.NoError(t, err)
	require.Equal(t, []feed.ConsumerInfo{
		{Name: "a-consumer", Generation: 1, UpdatedAt: committedAt, HeartbeatAt: committedAt},
		{
			Name: "b-consumer", Position: first.Token, Owner: "owner-1", Generation: 1,
			LeaseUntil: committedAt.Add(-time.Second).Add(time.Minute), HeartbeatAt: committedAt, UpdatedAt: committedAt,
		},
	}, infos)
}
