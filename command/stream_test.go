package command_test

import (
	"strings"
	"testing"
	"testing/quick"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
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
