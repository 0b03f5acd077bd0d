package command_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestUnitOfManyCommandsLooksResultsUpAtOnce: on PostgreSQL, commands that
// share a unit (a handler that is behind) are claimed in one statement and
// have their earlier results looked up in one more, in the same round trip,
// at the head of the unit, not one each (40 claims and 40 look-ups without
// it), and each still lands once.
func TestUnitOfManyCommandsLooksResultsUpAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, nil)
	var on atomic.Bool
	var lookups, prefetches, claims atomic.Int64
	pool := db.Traced(t, func(sql string, args []any) {
		switch {
		case !on.Load():
		case strings.HasPrefix(sql, "SELECT namespace, tbl, key, value"):
			prefetches.Add(1)
		case strings.HasPrefix(sql, "SELECT value, major, minor") && len(args) > 1 && args[1] == "results":
			lookups.Add(1)
		case strings.HasPrefix(sql, "INSERT INTO") && len(args) > 1 && slices.Contains(asStrings(args[1]), "claims"):
			claims.Add(1)
		}
	})
	s, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: db.Schema, Registry: registry(t)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })

	const commands, partitions = 40, 2
	for i := range commands {
		_, err := s.Append(ctx, command.StreamFor("account.deposit", fmt.Sprint("sender-", i)), events.AnyVersion, events.Event{
			Data: Deposit{Account: fmt.Sprint(i), Amount: i}, Metadata: events.Metadata{CorrelationID: fmt.Sprint("sender-", i)},
		})
		require.NoError(t, err)
	}
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	p, err := command.NewProcessor(&command.ProcessorConfig{
		Store: s, Router: router, Partitions: partitions, Subscriber: feed.SubscriberConfig{CommitBatch: commands},
	})
	require.NoError(t, err)
	require.NoError(t, p.AddHandlers(command.Handle("deposit", s, balance, func(c Deposit) string { return "account-" + c.Account },
		func(_ context.Context, _ int, c Deposit) ([]any, error) {
			return []any{Deposited{Amount: c.Amount}}, nil
		})))
	on.Store(true)
	runRouter(t, router)
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		for i := range commands {
			v, err := s.StreamVersion(ctx, fmt.Sprint("account-", i))
			require.NoError(c, err)
			require.GreaterOrEqual(c, v, int64(1), "account-%d", i)
		}
	}, 30*time.Second, 5*time.Millisecond)
	on.Store(false)
	for i := range commands {
		v, err := s.StreamVersion(ctx, fmt.Sprint("account-", i))
		require.NoError(t, err)
		require.Equal(t, int64(1), v, "command %d landed once", i)
	}
	// A command alone in its unit looks its result up by itself: on a
	// loaded server the first read can find part of the backlog (an open
	// transaction elsewhere holds the rest back), leaving a unit of one.
	require.Positive(t, prefetches.Load())
	require.Less(t, lookups.Load()+prefetches.Load(), int64(commands/4),
		"a look-up per unit, not per command (%d alone, %d for a unit)", lookups.Load(), prefetches.Load())
	require.Positive(t, claims.Load())
	require.Less(t, claims.Load(), int64(commands/4), "a claim per unit, not per command")
}

// asStrings is a statement argument as the strings it holds, if any.
func asStrings(arg any) []string {
	s, _ := arg.([]string)
	return s
}
