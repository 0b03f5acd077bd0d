package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
)

// TestUndecodableCommandIsRejectedAndTheOthersGoOn: Watermill decodes a
// command before its handler runs, and a command that does not decode
// into its type would fail its delivery for ever, with every later
// command of the handler, from any sender, behind it. Commands that do
// not decode (a payload of another schema, a schema version newer than
// this build's, an upcaster that fails) are each rejected instead: their
// sender gets a Rejected event saying why, the handler decides nothing
// for them and goes on to the commands behind. The rejection is kept: a
// command delivered again once it decodes (the upcaster fixed) reports
// it and decides nothing. Which commands are bad, and how, is random.
func TestUndecodableCommandIsRejectedAndTheOthersGoOn(t *testing.T) {
	t.Parallel()
	eachStoreSeeded(t, func(t *testing.T, mk storeMaker, rng *rand.Rand) { //nolint:thelper // a subtest body
		ctx := context.Background()
		var broken atomic.Bool
		broken.Store(true)
		reg := events.NewRegistry()
		events.RegisterVersioned[Deposit](reg, "account.deposit", 2, events.Upcaster{From: 1, Func: func(p json.RawMessage) (json.RawMessage, error) {
			if broken.Load() {
				return nil, errors.New("v1 deposits are not upcast yet")
			}
			return p, nil
		}})
		events.Register[Deposited](reg, "account.deposited")
		s := mk(t, reg)

		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		p, err := command.NewProcessor(&command.ProcessorConfig{Store: s, Router: router})
		require.NoError(t, err)
		var decided atomic.Int32
		deposit := func(_ context.Context, _ int, c Deposit) ([]any, error) {
			decided.Add(1)
			return []any{Deposited{Amount: c.Amount}}, nil
		}
		require.NoError(t, p.AddHandlers(command.Handle("deposit", s, balance, func(c Deposit) string { return "account-" + c.Account }, deposit)))

		// Each kind of bad command once, and good ones, in random order
		// but with a bad one first.
		bad := map[string]struct {
			raw  events.Raw
			says string
		}{
			"other schema": {events.Raw{Type: "account.deposit", SchemaVersion: 2, Payload: json.RawMessage(`{"account":"x","amount":"ten"}`)}, "cannot unmarshal"},
			"newer schema": {events.Raw{Type: "account.deposit", SchemaVersion: 3, Payload: json.RawMessage(`{"account":"x","amount":1}`)}, "newer than this build"},
			"upcaster":     {events.Raw{Type: "account.deposit", SchemaVersion: 1, Payload: json.RawMessage(`{"account":"x","amount":1}`)}, "not upcast yet"},
		}
		kinds := []string{"other schema", "newer schema", "upcaster"}
		for range 2 + rng.IntN(5) {
			kinds = append(kinds, "good")
		}
		rng.Shuffle(len(kinds), func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
		if kinds[0] == "good" {
			i := slices.IndexFunc(kinds, func(k string) bool { return k != "good" })
			kinds[0], kinds[i] = kinds[i], kinds[0]
		}
		for i, kind := range kinds {
			sender := fmt.Sprint("sender-", i)
			var data any = Deposit{Account: fmt.Sprint("good-", i), Amount: 1 + i}
			if b, ok := bad[kind]; ok {
				data = b.raw
			}
			_, err := s.Append(ctx, command.StreamFor("account.deposit", sender), events.AnyVersion, events.Event{Data: data, Metadata: events.Metadata{CorrelationID: sender}})
			require.NoError(t, err)
		}
		runRouter(t, router)

		awaitFeed(t, s, "every command handled", func() bool {
			for i, kind := range kinds {
				stream := fmt.Sprint("account-good-", i)
				if kind != "good" {
					stream = command.StreamFor(command.RejectedType, fmt.Sprint("sender-", i))
				}
				v, err := s.StreamVersion(ctx, stream)
				require.NoError(t, err)
				if v == 0 {
					return false
				}
			}
			return true
		})
		goods := int32(len(kinds) - len(bad))
		require.Equal(t, goods, decided.Load(), "only the commands that decode were decided")

		broken.Store(false)
		for i, kind := range kinds {
			if kind == "good" {
				continue
			}
			sender := fmt.Sprint("sender-", i)
			envs, err := s.ReadStream(ctx, command.StreamFor(command.RejectedType, sender), 1, 0)
			require.NoError(t, err)
			require.Len(t, envs, 1, "%s: one rejection", kind)
			rej, err := events.DecodeAs[command.Rejected](reg, envs[0])
			require.NoError(t, err)
			cmds, err := s.ReadStream(ctx, command.StreamFor("account.deposit", sender), 1, 0)
			require.NoError(t, err)
			require.Equal(t, cmds[0].ID, rej.CommandID, kind)
			require.Equal(t, "account.deposit", rej.Type, kind)
			require.Contains(t, rej.Reason, "does not decode", kind)
			require.Contains(t, rej.Reason, bad[kind].says, kind)
			require.Equal(t, sender, envs[0].Metadata.CorrelationID, "%s: the rejection reaches its sender", kind)
			require.Equal(t, cmds[0].ID, envs[0].Metadata.CausationID, kind)

			if kind == "upcaster" {
				res := runIn(t, s, cmds[0], deposit)
				require.Equal(t, rej.Reason, res.Rejected, "redelivered once it decodes, it reports its rejection")
				require.Equal(t, []string{envs[0].ID}, res.EventIDs)
				require.Equal(t, goods, decided.Load(), "and decides nothing")
			}
		}
		v, err := s.StreamVersion(ctx, "account-x")
		require.NoError(t, err)
		require.Zero(t, v, "no bad command deposited anything")
	})
}

// awaitFeed waits until cond holds, checking it again each time the
// store's feed wakes (an append or a unit committed), and fails the test
// after 30 s.
func awaitFeed(t *testing.T, s store, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		wake := s.Wake() // before the check, so a commit in between wakes us
		if cond() {
			return
		}
		select {
		case <-wake:
		case <-deadline:
			t.Fatalf("%s: not after 30 s", what)
		}
	}
}
