package command_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
)

// TestOneCommandDeliveredByTwoConsumersAtOnceHasOneOutcome: during a
// rolling deploy that changes ProcessorConfig.Partitions (or renames the
// handler), the old process's consumer and the new process's consumers
// read the same commands at once, and the Partitions doc promises that
// the stored results make the commands one of them handled no-ops for
// the other. Here the old build rejects every command and the new one
// deposits, so a command both decided would be rejected and deposited,
// and the saga that sent it would hear both. The old consumer is held
// inside its first decision, its unit open, while the new consumers
// deliver the same commands. On PostgreSQL the new consumer of that
// command waits in its claim of it (a lock wait in pg_stat_activity) until
// the old unit commits, then finds its result; in memory the new
// consumers commit and the old unit's commit conflicts, so the command
// comes to it again and is found handled. Once every consumer is past the
// last command, each command has exactly one outcome (a deposit or a
// Rejected event caused by it), and its stored result says which.
//
// Drawn at random: how many commands, their ids, senders and accounts
// (SQL metacharacters in them), both processors' CommitBatch, the new
// Partitions, and whether the new build renames the handler.
func TestOneCommandDeliveredByTwoConsumersAtOnceHasOneOutcome(t *testing.T) {
	t.Parallel()
	eachStoreSeeded(t, func(t *testing.T, mk storeMaker, rng *rand.Rand) { //nolint:thelper // a subtest body
		ctx := context.Background()
		s := mk(t, registry(t))
		topic := command.Category("account.deposit")

		n := 2 + rng.IntN(7)
		odd := []string{`o'brien`, `"; DROP TABLE rows; --`, `50%_off\`, `$1::text`, `a)or(1=1`, "tab\u00a0€", `;`}
		type sentCommand struct{ id, sender, account string }
		cmds := make([]sentCommand, n)
		var last events.Token
		for i := range cmds {
			c := sentCommand{id: randomUUID(rng), sender: fmt.Sprint(odd[rng.IntN(len(odd))], i), account: fmt.Sprint(odd[rng.IntN(len(odd))], i)}
			cmds[i] = c
			res, err := s.Append(ctx, command.StreamFor("account.deposit", c.sender), events.AnyVersion, events.Event{
				ID: c.id, Data: Deposit{Account: c.account, Amount: 1 + rng.IntN(50)}, Metadata: events.Metadata{CorrelationID: c.sender},
			})
			require.NoError(t, err)
			last = res.Token
		}

		// The old build: one consumer, refusing every command, held in
		// its first decision until release.
		inside, hold := make(chan struct{}), make(chan struct{})
		var releaseOnce sync.Once
		release := func() { releaseOnce.Do(func() { close(hold) }) }
		var held atomic.Bool
		oldLog := newCommittedLog()
		oldBatch := 1 + rng.IntN(n+1)
		startRouter(t, processorRouter(t, s, "deposit", 1, oldBatch, oldLog, func(context.Context, int, Deposit) ([]any, error) {
			if held.CompareAndSwap(false, true) {
				close(inside)
				<-hold
			}
			return nil, command.Reject("refused by the old build")
		}))
		t.Cleanup(release) // runs before the router's cleanup, which waits for the handler
		select {
		case <-inside:
		case <-time.After(30 * time.Second):
			t.Fatal("the old consumer never decided")
		}

		// The new build: Partitions consumers, depositing.
		partitions, name := 2+rng.IntN(3), "deposit"
		if rng.IntN(2) == 0 {
			name = "deposit-v2"
		}
		newBatch := 1 + rng.IntN(n+1)
		t.Logf("%d commands; old consumer CommitBatch %d; new handler %q, Partitions %d, CommitBatch %d", n, oldBatch, name, partitions, newBatch)
		newLog := newCommittedLog()
		startRouter(t, processorRouter(t, s, name, partitions, newBatch, newLog, func(_ context.Context, _ int, c Deposit) ([]any, error) {
			return []any{Deposited{Amount: c.Amount}}, nil
		}))
		newNames := make([]string, partitions)
		for i := range newNames {
			newNames[i] = feed.CheckpointName(feed.PartitionName("command."+name, i, partitions), topic)
		}

		// The new consumers go as far as they can while the old unit is
		// open: past the last command, or (PostgreSQL) into a wait for a
		// command the old unit holds.
		require.Eventually(t, func() bool {
			if waiting, err := claimWaits(ctx, s); err != nil || waiting > 0 {
				return err == nil
			}
			return newLog.pastAll(last, newNames...)
		}, 30*time.Second, 2*time.Millisecond, "the new consumers neither finished nor waited")
		release()
		oldLog.awaitAll(t, last, feed.CheckpointName("command.deposit", topic))
		newLog.awaitAll(t, last, newNames...)

		// Each command's outcomes: the deposits and rejections it caused.
		caused := func(stream, id string) int {
			envs, err := s.ReadStream(ctx, stream, 1, 0)
			require.NoError(t, err)
			n := 0
			for _, env := range envs {
				if env.Metadata.CausationID == id {
					n++
				}
			}
			return n
		}
		for _, c := range cmds {
			deposits := caused("account-"+c.account, c.id)
			rejections := caused(command.StreamFor(command.RejectedType, c.sender), c.id)
			require.Equal(t, 1, deposits+rejections,
				"command %s has one outcome; it has %d deposits and %d rejections", c.id, deposits, rejections)
			row, ok, err := s.Rows().Get(ctx, "converge.command", "results", c.id, feed.LockNone)
			require.NoError(t, err)
			require.True(t, ok, "command %s has a result", c.id)
			var res command.Result
			require.NoError(t, json.Unmarshal(row.Value, &res))
			require.Equal(t, rejections == 1, res.Rejected != "", "the result of %s says what happened: %+v", c.id, res)
		}
		claims, err := s.Rows().List(ctx, "converge.command", "claims", feed.RowQuery{})
		require.NoError(t, err)
		require.Empty(t, claims, "a claim lives only while its unit does")
	})
}

// TestOneCommandRunInTwoUnitsAtOnceHasOneOutcome is the same at the level
// of Run, with decisions that differ by the state they see: a delivery of
// the command rejects it on the account's balance (60, and 50 more is over
// the limit of 100) and has not committed when another writer's event
// lowers the balance to 40 and a second delivery of the command (another
// consumer's unit) starts, which would deposit. On PostgreSQL the second
// waits in its claim of the command (a lock wait in pg_stat_activity) and,
// once the first commits, reports its rejection; in memory it deposits and
// commits, and the first unit's commit conflicts. Either way the command
// has one outcome. The command's id and sender are drawn at random.
func TestOneCommandRunInTwoUnitsAtOnceHasOneOutcome(t *testing.T) {
	t.Parallel()
	eachStoreSeeded(t, func(t *testing.T, mk storeMaker, rng *rand.Rand) { //nolint:thelper // a subtest body
		ctx := context.Background()
		s := mk(t, registry(t))
		var calls atomic.Int32
		limit := decide(&calls)
		_, err := s.Append(ctx, "account-two", events.AnyVersion, events.Event{Data: Deposited{Amount: 60}})
		require.NoError(t, err)
		odd := []string{`o'brien`, `"; DROP TABLE rows; --`, `50%_off\`, `$1::text`}
		sender := odd[rng.IntN(len(odd))]
		stream := command.StreamFor("account.deposit", sender)
		res, err := s.Append(ctx, stream, events.AnyVersion, events.Event{
			ID: randomUUID(rng), Data: Deposit{Account: "two", Amount: 50}, Metadata: events.Metadata{CorrelationID: sender},
		})
		require.NoError(t, err)
		envs, err := s.ReadStream(ctx, stream, res.LastVersion, 1)
		require.NoError(t, err)
		cmd := envs[0]

		// The first delivery: rejected on 60, not committed yet.
		u1, err := s.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = u1.Rollback(ctx) }()
		first, err := runInUnit(s, u1, cmd, limit)
		require.NoError(t, err)
		require.NotEmpty(t, first.Rejected)

		// Another command to the account commits meanwhile: 40 left.
		_, err = s.Append(ctx, "account-two", events.AnyVersion, events.Event{Data: Deposited{Amount: -20}})
		require.NoError(t, err)

		// The second delivery goes as far as it can: through (memory), or
		// into a wait for the first unit's claim (PostgreSQL).
		type outcome struct {
			res command.Result
			err error
		}
		second := make(chan outcome, 1)
		go func() {
			res, err := tryRunIn(t, s, cmd, limit)
			second <- outcome{res, err}
		}()
		var got outcome
		done := false
		require.Eventually(t, func() bool {
			select {
			case got = <-second:
				done = true
				return true
			default:
			}
			waiting, err := claimWaits(ctx, s)
			return err == nil && waiting > 0
		}, 30*time.Second, 2*time.Millisecond, "the second delivery neither finished nor waited")
		err1 := u1.Commit(ctx)
		if !done {
			got = <-second
		}
		t.Logf("first unit: %v; second unit: %+v", err1, got)
		require.NoError(t, got.err)
		if err1 != nil {
			require.ErrorIs(t, err1, feed.ErrConflict, "the first unit is refused, not failed")
			require.Empty(t, got.res.Rejected, "the second delivery's deposit is the outcome")
		} else {
			require.Equal(t, first, got.res, "the second delivery reports the first's rejection")
		}

		deps, err := s.ReadStream(ctx, "account-two", 1, 0)
		require.NoError(t, err)
		rej, err := s.ReadStream(ctx, command.StreamFor(command.RejectedType, sender), 1, 0)
		require.NoError(t, err)
		outcomes := len(rej)
		for _, env := range deps {
			if env.Metadata.CausationID == cmd.ID {
				outcomes++
			}
		}
		require.Equal(t, 1, outcomes, "the command has one outcome; it has %d deposits and %d rejections", len(deps)-2, len(rej))
	})
}

// runInUnit runs command.Run for env in u, as a delivery would, without
// committing.
func runInUnit(s store, u feed.Unit, env events.Envelope, d command.Decide[Deposit, int]) (command.Result, error) {
	ctx := context.Background()
	msg, err := feed.MessageFromEnvelope(env)
	if err != nil {
		return command.Result{}, err
	}
	uctx := cqrs.CtxWithOriginalMessage(u.Context(events.ContextWithUnit(ctx, u)), msg)
	var c Deposit
	if err := (command.Marshaler{Registry: s.Registry()}).Unmarshal(msg, &c); err != nil {
		return command.Result{}, err
	}
	return command.Run(uctx, s, balance, "account-"+c.Account, c, d)
}

// processorRouter returns a router with a command.Processor of partitions
// consumers and commit batch batch, running handler name with decide, its
// commits recorded in log.
func processorRouter(t *testing.T, s store, name string, partitions, batch int, log *committedLog, decide command.Decide[Deposit, int]) *message.Router {
	t.Helper()
	router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
	require.NoError(t, err)
	p, err := command.NewProcessor(&command.ProcessorConfig{
		Store: s, Router: router, Partitions: partitions,
		Subscriber: feed.SubscriberConfig{CommitBatch: batch, OnCommitted: log.onCommitted},
	})
	require.NoError(t, err)
	require.NoError(t, p.AddHandlers(command.Handle(name, s, balance, func(c Deposit) string { return "account-" + c.Account }, decide)))
	return router
}

// claimWaits counts the statements on s's rows table waiting for a lock:
// on PostgreSQL, units waiting for another's claim. Memory never waits.
func claimWaits(ctx context.Context, s store) (int, error) {
	pg, ok := s.(*pgstore.Store)
	if !ok {
		return 0, nil
	}
	var n int
	err := pg.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
WHERE wait_event_type = 'Lock' AND datname = current_database() AND strpos(query, $1) > 0`,
		pgx.Identifier{pg.Schema(), "rows"}.Sanitize()).Scan(&n)
	return n, err
}

// pastAll reports whether every name has committed a position at or after
// tok.
func (l *committedLog) pastAll(tok events.Token, names ...string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, n := range names {
		if p, ok := l.pos[n]; !ok || p.Before(tok) {
			return false
		}
	}
	return true
}

// randomUUID draws a version 4 UUID from rng, so a seed replays the ids.
func randomUUID(rng *rand.Rand) string {
	var id uuid.UUID
	binary.LittleEndian.PutUint64(id[:8], rng.Uint64())
	binary.LittleEndian.PutUint64(id[8:], rng.Uint64())
	id[6] = id[6]&0x0f | 0x40
	id[8] = id[8]&0x3f | 0x80
	return id.String()
}
