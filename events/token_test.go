package events_test

import (
	"errors"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

func TestTokenRoundTripAndOrder(t *testing.T) {
	t.Parallel()
	toks := []events.Token{
		events.MakeToken(0, 0),
		events.MakeToken(0, 1),
		events.MakeToken(1, 0),
		events.MakeToken(1, 255),
		events.MakeToken(1, 256),
		events.MakeToken(1<<40, 3),
		events.MakeToken(^uint64(0), ^uint64(0)),
	}
	strs := make([]string, len(toks))
	for i, tok := range toks {
		s := tok.String()
		got, err := events.ParseToken(s)
		require.NoError(t, err)
		require.Equal(t, tok, got)
		strs[i] = s
		if i > 0 {
			require.True(t, toks[i-1].Before(tok))
			require.Equal(t, 1, tok.Compare(toks[i-1]))
		}
	}
	require.True(t, sort.StringsAreSorted(strs), "string forms must sort in feed order")
}

func TestParseTokenErrors(t *testing.T) {
	t.Parallel()
	good := events.MakeToken(7, 9).String()
	cases := map[string]string{
		"empty":        "",
		"no prefix":    "12345",
		"truncated":    good[:len(good)-1],
		"too long":     good + "A",
		"bad alphabet": "v1." + "++++++++++++++++++++++",
		"sql":          "v1.'; DROP TABLE events;--",
	}
	for name, in := range cases {
		_, err := events.ParseToken(in)
		require.ErrorIs(t, err, events.ErrInvalidToken, name)
		require.False(t, errors.Is(err, events.ErrTokenVersion), name)
	}
	_, err := events.ParseToken("v2.AAAAAAAAAAAAAAAAAAAAAA")
	require.ErrorIs(t, err, events.ErrInvalidToken)
	require.ErrorIs(t, err, events.ErrTokenVersion)
}

func TestTokenJSON(t *testing.T) {
	t.Parallel()
	tok := events.MakeToken(3, 4)
	b, err := tok.MarshalText()
	require.NoError(t, err)
	var back events.Token
	require.NoError(t, back.UnmarshalText(b))
	require.Equal(t, tok, back)
	require.Error(t, back.UnmarshalText([]byte("nope")))
}

func FuzzParseToken(f *testing.F) {
	f.Add(events.MakeToken(1, 2).String())
	f.Add("v1.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("v2.AAAAAAAAAAAAAAAAAAAAAA")
	f.Add("")
	f.Add("v1.////")
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := events.ParseToken(s)
		if err != nil {
			require.ErrorIs(t, err, events.ErrInvalidToken)
			return
		}
		// Only canonical encodings parse, so a parsed token prints back to
		// exactly its input.
		require.Equal(t, s, tok.String())
	})
}

func TestExactlyRefusesNegative(t *testing.T) {
	t.Parallel()
	require.Equal(t, events.NoStream, events.Exactly(0))
	require.NotEqual(t, events.AnyVersion, events.Exactly(-1))
	require.NotEqual(t, events.StreamExists, events.Exactly(-2))
	_, err := events.Prepare(nil, events.Limits{}, "s-1", events.Exactly(-1),
		[]events.Event{{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}}})
	require.ErrorIs(t, err, events.ErrInvalidEvent)
}
