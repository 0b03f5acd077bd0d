package events_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"sort"
	"strings"
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
		"bad alphabet": "v2." + "++++++++++++++++++++++",
		"base64url":    "v2." + "AAAAAAAAAAEAAAAAAAAAAQ",
		"sql":          "v2.'; DROP TABLE events;--",
		"CR in body":   "v2.0000000\r00000\r00000000",
	}
	for name, in := range cases {
		_, err := events.ParseToken(in)
		require.ErrorIs(t, err, events.ErrInvalidToken, name)
		require.False(t, errors.Is(err, events.ErrTokenVersion), name)
	}
	_, err := events.ParseToken("v3.AAAAAAAAAAAAAAAAAAAAAA")
	require.ErrorIs(t, err, events.ErrInvalidToken)
	require.ErrorIs(t, err, events.ErrTokenVersion)

	// Format v1 (base64url, whose strings did not sort in feed order) was
	// never released: it is refused with a message saying what changed.
	_, err = events.ParseToken("v1.AAAAAAAAAAEAAAAAAAAAAQ")
	require.ErrorIs(t, err, events.ErrInvalidToken)
	require.ErrorIs(t, err, events.ErrTokenVersion)
	require.ErrorContains(t, err, "format v1")
	require.ErrorContains(t, err, "fresh token")
}

// TestParseTokenSaysWhatIsWrong: a body of the right length, all of it in
// the token alphabet, whose last character has bits set that no token
// has, is refused for that reason, not as "not of the alphabet" (which
// sent a reader hunting for a character that was not there); a body of
// the wrong length, or with a character outside the alphabet, still gets
// its own message.
func TestParseTokenSaysWhatIsWrong(t *testing.T) {
	t.Parallel()
	good := events.MakeToken(1, 2).String()
	body := good[len(events.TokenPrefix):]
	const alphabet = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz"
	endings := 0
	for i := range len(alphabet) {
		last := alphabet[i]
		in := events.TokenPrefix + body[:len(body)-1] + string(last)
		tok, err := events.ParseToken(in)
		if i%16 == 0 {
			require.NoError(t, err, in)
			require.Equal(t, in, tok.String(), "a token that parses prints back as it was")
			endings++
			continue
		}
		require.ErrorIs(t, err, events.ErrInvalidToken, in)
		require.ErrorContains(t, err, fmt.Sprintf("last character %q cannot end a token", last), in)
		require.ErrorContains(t, err, "-, F, V or k", in)
		require.NotContains(t, err.Error(), "alphabet", in)
	}
	require.Equal(t, 4, endings)
	// The value converge projections reset --help showed.
	_, err := events.ParseToken("v2.AAAAAAAAAAEAAAAAAAAAAA")
	require.ErrorContains(t, err, "last character 'A' cannot end a token")

	for _, in := range []string{good[:len(good)-1], good + "F", events.TokenPrefix + strings.Repeat("A", 44)} {
		_, err := events.ParseToken(in)
		require.ErrorIs(t, err, events.ErrInvalidToken, in)
		require.ErrorContains(t, err, fmt.Sprintf("body has %d characters, want 22", len(in)-len(events.TokenPrefix)), in)
	}
	for _, in := range []string{"v2." + strings.Repeat("+", 22), "v2.0000000\r00000\r00000000", "v2.----------3---------=k"} {
		_, err := events.ParseToken(in)
		require.ErrorIs(t, err, events.ErrInvalidToken, in)
		require.ErrorContains(t, err, "body is not 22 characters of the token alphabet", in)
	}
}

// TestTokenStringsSortInFeedOrder checks the documented promise
// a.Before(b) == (a.String() < b.String()) over random pairs, biased
// towards byte boundaries and the neighbours that broke format v1.
func TestTokenStringsSortInFeedOrder(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	part := func() uint64 {
		switch rng.IntN(4) {
		case 0: // a power of two, or one off it: every byte boundary
			return (uint64(1) << rng.IntN(64)) + uint64(rng.IntN(3)) - 1
		case 1:
			return uint64(rng.IntN(300))
		case 2:
			return ^uint64(0) - uint64(rng.IntN(3))
		}
		return rng.Uint64()
	}
	check := func(a, b events.Token) {
		t.Helper()
		as, bs := a.String(), b.String()
		requireURLAndHeaderSafe(t, as)
		require.Equal(t, a.Before(b), as < bs, "%v vs %v: %s vs %s", a, b, as, bs)
		require.Equal(t, a.Compare(b), strings.Compare(as, bs), "%s vs %s", as, bs)
	}
	for range 20000 {
		a := events.MakeToken(part(), part())
		b := events.MakeToken(part(), part())
		if rng.IntN(3) == 0 {
			b = events.MakeToken(a.Major(), part()) // same major: minor decides
		}
		check(a, b)
		check(b, a)
	}
	// Consecutive memory tokens, the case a client sees most (v1 failed
	// between the 12th and 13th append).
	for i := range uint64(5000) {
		check(events.MakeToken(i, i), events.MakeToken(i+1, i+1))
	}
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
	f.Add("v2.0000000\r00000\r00000000")
	f.Add(events.MakeToken(1<<8, 1<<56-1).String())
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

// FuzzTokenRoundTrip checks that every token prints to a string that parses
// back to it and sorts like it against its neighbours.
func FuzzTokenRoundTrip(f *testing.F) {
	f.Add(uint64(0), uint64(0), uint64(1), uint64(0))
	f.Add(uint64(12), uint64(12), uint64(13), uint64(13))
	f.Add(uint64(255), uint64(1)<<63, uint64(256), uint64(0))
	f.Fuzz(func(t *testing.T, aMajor, aMinor, bMajor, bMinor uint64) {
		a, b := events.MakeToken(aMajor, aMinor), events.MakeToken(bMajor, bMinor)
		for _, tok := range []events.Token{a, b} {
			got, err := events.ParseToken(tok.String())
			require.NoError(t, err)
			require.Equal(t, tok, got)
			requireURLAndHeaderSafe(t, tok.String())
		}
		require.Equal(t, a.Compare(b), strings.Compare(a.String(), b.String()))
	})
}

// requireURLAndHeaderSafe checks the package doc's promise that a token
// string is URL- and header-safe: RFC 3986 unreserved characters only, so
// it travels in a path, a query or a header value without escaping.
func requireURLAndHeaderSafe(t *testing.T, s string) {
	t.Helper()
	for i := range len(s) {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-._~", c) >= 0
		require.True(t, ok, "token string %q holds %q, which needs escaping in a URL or header", s, c)
	}
	require.Equal(t, s, url.QueryEscape(s))
	require.Equal(t, s, url.PathEscape(s))
}

// TestParseTokenSaysWhichWayTheLengthIsWrong: a token body shorter than a
// token's reads as truncated, a longer one as having something appended,
// over random lengths either side.
func TestParseTokenSaysWhichWayTheLengthIsWrong(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	good := events.MakeToken(rng.Uint64(), rng.Uint64()).String()
	for range 200 {
		body := good[len(events.TokenPrefix):]
		n := rng.IntN(3 * len(body))
		if n == len(body) {
			continue
		}
		var s string
		if n < len(body) {
			s = events.TokenPrefix + body[:n]
		} else {
			s = good + strings.Repeat("A", n-len(body))
		}
		_, err := events.ParseToken(s)
		require.ErrorIs(t, err, events.ErrInvalidToken, "%q", s)
		if n < len(body) {
			require.ErrorContains(t, err, "truncated", "%q", s)
		} else {
			require.ErrorContains(t, err, "appended", "%q", s)
		}
	}
}
