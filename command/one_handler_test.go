package command_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

// TestACommandTypeHasOneHandler: results are kept by command id, so of
// two handlers of one command type the second would find the first's
// result and do nothing. Handlers of two types, two to four each, are added
// in random order over random calls to AddHandlers: a call is refused
// when one of its handlers is for a type already handled, by an earlier
// call or earlier in the same call, naming the type and both handlers,
// and nothing of a refused call is added.
func TestACommandTypeHasOneHandler(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 13))
	letters := []rune("abcxyz._é")
	for round := range 20 {
		reg := registry(t)
		events.Register[Pay](reg, "pay")
		store, err := memstore.New(&memstore.Config{Registry: reg})
		require.NoError(t, err)
		router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		require.NoError(t, err)
		p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router})
		require.NoError(t, err)

		type handler struct {
			typ string
			h   cqrs.CommandHandler
		}
		var all []handler
		name := func() string {
			r := make([]rune, 1+rng.IntN(8))
			for j := range r {
				r[j] = letters[rng.IntN(len(letters))]
			}
			return fmt.Sprintf("%s%d", string(r), len(all)) // distinct: the router refuses a name twice
		}
		for range 2 + rng.IntN(3) {
			all = append(all, handler{"account.deposit", cqrs.NewCommandHandler(name(), func(context.Context, *Deposit) error { return nil })})
		}
		for range 2 + rng.IntN(3) {
			all = append(all, handler{"pay", cqrs.NewCommandHandler(name(), func(context.Context, *Pay) error { return nil })})
		}
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		handledBy := map[string]string{}
		var added []string
		for len(all) > 0 {
			call := all[:1+rng.IntN(min(3, len(all)))]
			all = all[len(call):]
			var hs []cqrs.CommandHandler
			var earlier, later, typ string
			inCall := map[string]string{}
			for _, h := range call {
				hs = append(hs, h.h)
				if earlier != "" {
					continue
				}
				if first, ok := handledBy[h.typ]; ok {
					earlier, later, typ = first, h.h.HandlerName(), h.typ
				} else if first, ok := inCall[h.typ]; ok {
					earlier, later, typ = first, h.h.HandlerName(), h.typ
				}
				inCall[h.typ] = h.h.HandlerName()
			}
			err := p.AddHandlers(hs...)
			if earlier == "" {
				require.NoError(t, err, "round %d", round)
				for _, h := range call {
					handledBy[h.typ] = h.h.HandlerName()
					added = append(added, h.h.HandlerName())
				}
			} else {
				require.ErrorContains(t, err, fmt.Sprintf("handlers %q and %q both handle command type %q", earlier, later, typ), "round %d", round)
			}
			var got []string
			for _, c := range p.Consumers() {
				got = append(got, c.Handler)
			}
			require.Equal(t, added, got, "round %d: the handlers added, and none of a refused call", round)
			for _, typ := range []string{"account.deposit", "pay"} {
				_, ok := handledBy[typ]
				require.Equal(t, ok, p.Handles(typ), "round %d: %s", round, typ)
			}
		}
		require.NoError(t, store.Close())
	}
}
