package command_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/quick"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// TestConsumerNames: each handler's feed consumer is named
// "<ConsumerPrefix>.<handler name>" (DefaultConsumerPrefix when the prefix
// is empty), or "<prefix>.<handler>#<i>/<n>" for each of n Partitions, for
// random handler names, prefixes and partition counts: the leases held
// while the router runs are those names' checkpoints of the command
// category, and no others.
func TestConsumerNames(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	letters := []rune("abcxyz.-_é日 ")
	word := func() string {
		r := make([]rune, 1+rng.IntN(12))
		for i := range r {
			r[i] = letters[rng.IntN(len(letters))]
		}
		return string(r)
	}
	for range 4 {
		reg := registry(t)
		store, err := memstore.New(&memstore.Config{Registry: reg})
		require.NoError(t, err)
		router, err := message.NewRouter(message.RouterConfig{CloseTimeout: 10 * time.Second}, watermill.NopLogger{})
		require.NoError(t, err)
		prefix := ""
		if rng.IntN(2) == 0 {
			prefix = word()
		}
		partitions := rng.IntN(4)
		p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router, ConsumerPrefix: prefix, Partitions: partitions})
		require.NoError(t, err)
		name := word()
		require.NoError(t, p.AddHandlers(command.Handle(name, store, balance, func(c Deposit) string { return "account-" + c.Account },
			func(context.Context, int, Deposit) ([]any, error) { return nil, nil })))
		want := []string{}
		base := prefix
		if base == "" {
			base = command.DefaultConsumerPrefix
		}
		base += "." + name
		// Each consumer keeps its checkpoint per topic, the command type's
		// category (feed.CheckpointName).
		topic := command.Category("account.deposit")
		if partitions <= 1 {
			want = append(want, feed.CheckpointName(base, topic))
		} else {
			for i := range partitions {
				want = append(want, feed.CheckpointName(fmt.Sprintf("%s#%d/%d", base, i, partitions), topic))
			}
		}
		slices.Sort(want)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- router.Run(ctx) }()
		<-router.Running()
		require.EventuallyWithT(t, func(c *assert.CollectT) {
			cs, err := store.Consumers(context.Background())
			require.NoError(c, err)
			var got []string
			for _, cons := range cs {
				if cons.Owner != "" {
					got = append(got, cons.Name)
				}
			}
			assert.Equal(c, want, got, "owned consumers")
		}, 30*time.Second, 5*time.Millisecond, "consumers named %q (prefix %q, handler %q, %d partitions)", want, prefix, name, partitions)
		cancel()
		require.NoError(t, router.Close())
		require.NoError(t, <-done)
		require.NoError(t, store.Close())
	}
}

// TestRegisterLeavesAnExistingRejectedAlone: a registry that already has
// Rejected (at any schema version, with upcasters and aliases) is left
// as it was by Register: same name and version, old payloads still upcast,
// aliases still resolve. A registry that has it under another name is
// refused.
func TestRegisterLeavesAnExistingRejectedAlone(t *testing.T) {
	t.Parallel()
	check := func(v uint8, alias uint16) bool {
		version := 1 + int(v%5)
		reg := events.NewRegistry()
		var ups []events.Upcaster
		for from := 1; from < version; from++ {
			ups = append(ups, events.Upcaster{From: from, Func: func(p json.RawMessage) (json.RawMessage, error) {
				return json.RawMessage(`{"reason":"upcast"}`), nil
			}})
		}
		events.RegisterVersioned[command.Rejected](reg, command.RejectedType, version, ups...)
		old := fmt.Sprint("old.rejected.", alias)
		require.NoError(t, reg.Alias(old, command.RejectedType))
		for range 2 { // and again: it stays a no-op
			if command.Register(reg) != nil {
				return false
			}
		}
		name, got, err := reg.NameOf(command.Rejected{})
		if err != nil || name != command.RejectedType || got != version {
			return false
		}
		if canonical, ok := reg.CanonicalName(old); !ok || canonical != command.RejectedType {
			return false
		}
		dec, err := reg.Decode(events.Envelope{Type: old, SchemaVersion: 1, Payload: json.RawMessage(`{"reason":"v1"}`)})
		want := "v1"
		if version > 1 {
			want = "upcast"
		}
		r, ok := dec.(command.Rejected)
		return err == nil && ok && r.Reason == want
	}
	require.NoError(t, quick.Check(check, nil))

	other := events.NewRegistry()
	events.Register[command.Rejected](other, "my.rejected")
	require.ErrorContains(t, command.Register(other), `registered as "my.rejected"`)
	fresh := events.NewRegistry()
	require.NoError(t, command.Register(fresh))
	name, version, err := fresh.NameOf(command.Rejected{})
	require.NoError(t, err)
	require.Equal(t, command.RejectedType, name)
	require.Equal(t, 1, version)
}

// TestMarshalerNameOfUnregisteredTypes: Marshaler.Name returns "" for a
// value of any type the registry does not have (and for nil), and the
// stored name for a registered type, by value or by pointer.
func TestMarshalerNameOfUnregisteredTypes(t *testing.T) {
	t.Parallel()
	m := command.Marshaler{Registry: registry(t)}
	type unregistered struct{ Account string }
	unknown := func(s string, n int64, f float64, b bool) bool {
		for _, v := range []any{s, &s, n, f, b, []string{s}, map[string]int64{s: n}, unregistered{s}, &unregistered{s}, struct{ N int64 }{n}} {
			if m.Name(v) != "" {
				return false
			}
		}
		d := Deposit{Account: s, Amount: int(n % 1000)}
		return m.Name(d) == "account.deposit" && m.Name(&d) == "account.deposit"
	}
	require.NoError(t, quick.Check(unknown, nil))
	require.Empty(t, m.Name(nil))
	cmd := command.Handle("h", nil, balance, func(Deposit) string { return "a" },
		func(context.Context, int, Deposit) ([]any, error) { return nil, nil })
	require.Equal(t, "account.deposit", m.Name(cmd.NewCommand()), "what cqrs asks for a handler's command")
}
