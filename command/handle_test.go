package command_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

type Deposit struct {
	Account string `json:"account"`
	Amount  int    `json:"amount"`
}

type Deposited struct {
	Amount int `json:"amount"`
}

func registry(t *testing.T) *events.Registry {
	t.Helper()
	reg := events.NewRegistry()
	events.Register[Deposit](reg, "account.deposit")
	events.Register[Deposited](reg, "account.deposited")
	require.NoError(t, command.Register(reg))
	return reg
}

// balance folds an account's deposits.
var balance = events.Aggregate[int]{Apply: func(b int, ev any) (int, error) {
	d, _ := ev.(Deposited)
	return b + d.Amount, nil
}}

func decide(calls *atomic.Int32) command.Decide[Deposit, int] {
	return func(_ context.Context, b int, c Deposit) ([]any, error) {
		calls.Add(1)
		if b+c.Amount > 100 {
			return nil, command.Reject("over the limit of 100")
		}
		return []any{Deposited{Amount: c.Amount}}, nil
	}
}

// sendCommand appends a command as a saga step would, and returns it as
// stored.
func sendCommand(t *testing.T, store *memstore.Store, id string, c Deposit) events.Envelope {
	t.Helper()
	ctx := context.Background()
	stream := command.StreamFor("account.deposit", "process-7")
	res, err := store.Append(ctx, stream, events.AnyVersion, events.Event{
		ID: id, Data: c,
		Metadata: events.Metadata{CorrelationID: "process-7", CausationID: "cause-1", Extra: map[string]string{
			command.MetaCausalToken: events.MakeToken(1, 7).String(), command.MetaSender: "deposits",
		}},
	})
	require.NoError(t, err)
	envs, err := store.ReadStream(ctx, stream, res.LastVersion, 1)
	require.NoError(t, err)
	return envs[0]
}

// deliver runs Run for env in a unit of its own, as a command handler
// delivery would.
func deliver(t *testing.T, store *memstore.Store, env events.Envelope, calls *atomic.Int32) command.Result {
	t.Helper()
	return runIn(t, store, env, decide(calls))
}

func TestRunAppendsOnceAndPropagatesIDs(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: registry(t)})
	require.NoError(t, err)
	defer store.Close()
	var calls atomic.Int32
	env := sendCommand(t, store, "0d6b1c8e-7a0c-4c52-9d1e-4a5b6c7d8e9f", Deposit{Account: "a", Amount: 30})

	first := deliver(t, store, env, &calls)
	require.Len(t, first.EventIDs, 1)
	require.Empty(t, first.Rejected)
	again := deliver(t, store, env, &calls) // a redelivery
	require.Equal(t, first, again, "a retried command reports its first result")
	require.Equal(t, int32(1), calls.Load(), "and decides nothing again")

	envs, err := store.ReadStream(context.Background(), "account-a", 1, 0)
	require.NoError(t, err)
	require.Len(t, envs, 1, "one deposit appended")
	require.Equal(t, "process-7", envs[0].Metadata.CorrelationID)
	require.Equal(t, env.ID, envs[0].Metadata.CausationID)
	require.Equal(t, first.EventIDs[0], envs[0].ID, "the event id derives from the command id")
	tok, ok := command.CausalToken(envs[0])
	require.True(t, ok, "the causal token travels on to the events")
	want, _ := command.CausalToken(env)
	require.Equal(t, want, tok)
	_, ok = command.CausalToken(events.Envelope{})
	require.False(t, ok)
}

func TestRejectionBecomesAnEvent(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: registry(t)})
	require.NoError(t, err)
	defer store.Close()
	var calls atomic.Int32
	env := sendCommand(t, store, "1d6b1c8e-7a0c-4c52-9d1e-4a5b6c7d8e9f", Deposit{Account: "a", Amount: 300})
	res := deliver(t, store, env, &calls)
	require.Equal(t, "over the limit of 100", res.Rejected)

	envs, err := store.ReadStream(context.Background(), command.StreamFor(command.RejectedType, "process-7"), 1, 0)
	require.NoError(t, err)
	require.Len(t, envs, 1)
	rej, err := events.DecodeAs[command.Rejected](store.Registry(), envs[0])
	require.NoError(t, err)
	require.Equal(t, command.Rejected{CommandID: env.ID, Type: "account.deposit", Reason: "over the limit of 100"}, rej)
	require.Equal(t, "process-7", envs[0].Metadata.CorrelationID, "the rejection reaches the sender's correlation")
	require.Equal(t, "deposits", envs[0].Metadata.Extra[command.MetaSender], "and names its sender, whom alone it answers")
	require.Equal(t, env.ID, envs[0].Metadata.CausationID)
	require.Equal(t, res, deliver(t, store, env, &calls), "a redelivered rejected command is not rejected twice")
	v, err := store.StreamVersion(context.Background(), "account-a")
	require.NoError(t, err)
	require.Zero(t, v)
}

func TestRunOutsideADelivery(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: registry(t)})
	require.NoError(t, err)
	defer store.Close()
	var calls atomic.Int32
	_, err = command.Run(context.Background(), store, balance, "account-a", Deposit{}, decide(&calls))
	require.ErrorContains(t, err, "delivered command")
}

func TestProcessorCatalog(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: registry(t)})
	require.NoError(t, err)
	defer store.Close()
	router, err := message.NewRouter(message.RouterConfig{}, nil)
	require.NoError(t, err)
	p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router})
	require.NoError(t, err)
	var calls atomic.Int32
	require.NoError(t, p.AddHandlers(command.Handle("deposit", store, balance, func(c Deposit) string { return "account-" + c.Account }, decide(&calls))))
	require.True(t, p.Handles("account.deposit"))
	require.False(t, p.Handles("account.withdraw"))
	_, err = command.NewProcessor(&command.ProcessorConfig{Store: store})
	require.ErrorContains(t, err, "Router")
}
