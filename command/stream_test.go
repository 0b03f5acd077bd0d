package command_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/quick"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// TestStreamForIsInTheTypesCategory: a command's stream, for any type and
// correlation, lies in its type's category, the one its handler reads; and
// a command's causal token reads back only when it carries one that
// parses.
func TestStreamForIsInTheTypesCategory(t *testing.T) {
	t.Parallel()
	in := func(typ, correlation string) bool {
		if typ == "" {
			return true
		}
		s := command.StreamFor(typ, correlation)
		return feed.InCategory(s, command.Category(typ)) && (correlation == "") == (s == command.Category(typ))
	}
	require.NoError(t, quick.Check(in, &quick.Config{MaxCount: 2000}))

	token := func(major, minor uint32, garbage string) bool {
		tok := events.MakeToken(uint64(major)+1, uint64(minor))
		got, ok := command.CausalToken(events.Envelope{Metadata: events.Metadata{Extra: map[string]string{command.MetaCausalToken: tok.String()}}})
		if !ok || got != tok {
			return false
		}
		_, err := events.ParseToken(garbage)
		_, ok = command.CausalToken(events.Envelope{Metadata: events.Metadata{Extra: map[string]string{command.MetaCausalToken: garbage}}})
		return ok == (garbage != "" && err == nil)
	}
	require.NoError(t, quick.Check(token, &quick.Config{MaxCount: 2000}))
	_, ok := command.CausalToken(events.Envelope{})
	require.False(t, ok, "a command without a causal token has none")
}

// TestStreamForIsAlwaysAValidStream: whatever the correlation (a saga
// instance id of up to 200 bytes, control characters, invalid UTF-8), a
// command's stream is a valid stream id in its type's category, the same
// for the same pair, and the plain category-correlation whenever that is
// valid, so the streams of commands sent before stay where they were.
func TestStreamForIsAlwaysAValidStream(t *testing.T) {
	t.Parallel()
	valid := func(typ, correlation string, repeat uint8) bool {
		typ = strings.Map(func(r rune) rune {
			if r < 0x80 && r > 0x20 && r != 0x7f && r != '-' {
				return r
			}
			return 'x'
		}, typ)
		if typ == "" || len(typ) > 100 || correlation == "" {
			return true
		}
		correlation = strings.Repeat(correlation, 1+int(repeat%12))
		s := command.StreamFor(typ, correlation)
		if events.ValidateStreamID(s) != nil || !feed.InCategory(s, command.Category(typ)) || s != command.StreamFor(typ, correlation) {
			return false
		}
		plain := command.Category(typ) + "-" + correlation
		return (s == plain) == (events.ValidateStreamID(plain) == nil)
	}
	require.NoError(t, quick.Check(valid, &quick.Config{MaxCount: 5000}))
}

// TestTypeNameLimitKeepsEveryStreamValid: a command type name of up to
// MaxTypeNameLength bytes has a valid stream for any correlation, and
// AddHandlers refuses a handler for a longer one, naming the limit.
// Lengths are random around the limit.
func TestTypeNameLimitKeepsEveryStreamValid(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	for range 20 {
		n := command.MaxTypeNameLength - 8 + rng.IntN(17)
		name := "a" + strings.Repeat("b", n-1)
		reg := events.NewRegistry()
		events.Register[Deposit](reg, name)
		store, err := memstore.New(&memstore.Config{Registry: reg})
		require.NoError(t, err)
		router, err := message.NewRouter(message.RouterConfig{}, watermill.NopLogger{})
		require.NoError(t, err)
		p, err := command.NewProcessor(&command.ProcessorConfig{Store: store, Router: router})
		require.NoError(t, err)
		err = p.AddHandlers(cqrs.NewCommandHandler("deposit", func(context.Context, *Deposit) error { return nil }))
		if n <= command.MaxTypeNameLength {
			require.NoError(t, err, "%d bytes", n)
			long := strings.Repeat("é", 100) // the longest instance id
			require.NoError(t, events.ValidateStreamID(command.StreamFor(name, long)), "%d bytes", n)
		} else {
			require.ErrorContains(t, err, fmt.Sprintf("is %d bytes; command streams allow type names of at most %d", n, command.MaxTypeNameLength))
		}
		require.NoError(t, store.Close())
	}
}
