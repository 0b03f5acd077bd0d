package eventstoretest

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// testReadBackWithinLimit checks the promise that Limits.MaxPayloadBytes
// bounds a payload as the store gives it back, not only as it was sent:
// PostgreSQL writes numbers out in full (1e300 as 301 digits) and spaces
// its separators, so a short payload can read back many times longer.
// Every payload accepted reads back within the limit and can be appended
// again exactly as read (a retry: AlreadyStored, the first token); every
// payload refused is refused because its read-back size is over it.
func testReadBackWithinLimit(t *testing.T, seed uint64, lim events.Limits, s events.Store) {
	rng := rand.New(rand.NewPCG(seed, seed^0x5eed))
	version := int64(0)
	for i := range 60 {
		payload := []byte(RandomNumericDocument(rng, 1+rng.IntN(12)))
		size, err := events.PayloadReadBackSize(payload)
		require.NoError(t, err, "the generator writes valid payloads: %s", payload)
		ev := events.Event{ID: newID(), Data: events.Raw{Type: "eventstoretest.blob", Payload: payload}}
		first, err := s.Append(t.Context(), "readback-1", events.Exactly(version), ev)
		if size > lim.MaxPayloadBytes {
			require.ErrorIs(t, err, events.ErrInvalidEvent, "payload %d (%s) reads back as up to %d bytes, over %d", i, payload, size, lim.MaxPayloadBytes)
			continue
		}
		require.NoError(t, err, "payload %d (%s), %d bytes read back, within %d", i, payload, size, lim.MaxPayloadBytes)
		version++
		got, err := s.ReadStream(t.Context(), "readback-1", version, 1)
		require.NoError(t, err)
		require.Len(t, got, 1)
		back := got[0]
		require.LessOrEqual(t, len(back.Payload), size, "payload %s read back as %s, longer than PayloadReadBackSize said", payload, back.Payload)
		again, err := s.Append(t.Context(), "readback-1", events.AnyVersion,
			events.Event{ID: back.ID, Data: events.Raw{Type: back.Type, Payload: back.Payload}})
		require.NoError(t, err, "the event as read back (%s) is appended again as a retry", back.Payload)
		require.True(t, again.AlreadyStored)
		require.Equal(t, first.Token, again.Token)
	}
}

// RandomNumericDocument writes a random JSON document of about n values:
// numbers in every spelling (exponents up to float64's range, fractions,
// negative zero), nested arrays and objects, strings and literals, with
// random whitespace. Every document passes events.ValidatePayload.
func RandomNumericDocument(rng *rand.Rand, n int) string {
	var b strings.Builder
	space := func() {
		if rng.IntN(4) == 0 {
			b.WriteString([]string{" ", "\n", "\t ", "  "}[rng.IntN(4)])
		}
	}
	var value func(depth int)
	value = func(depth int) {
		space()
		switch k := rng.IntN(10); {
		case k < 5 || depth > 2:
			b.WriteString(randomShortNumber(rng))
		case k == 5:
			b.WriteString([]string{"true", "false", "null", `"x"`, `"é\u00e9"`, `""`}[rng.IntN(6)])
		case k < 8:
			b.WriteByte('[')
			for i := range rng.IntN(4) {
				if i > 0 {
					b.WriteByte(',')
				}
				value(depth + 1)
			}
			b.WriteByte(']')
		default:
			b.WriteByte('{')
			for i := range rng.IntN(4) {
				if i > 0 {
					b.WriteByte(',')
				}
				space()
				fmt.Fprintf(&b, `"k%d"`, i)
				space()
				b.WriteByte(':')
				value(depth + 1)
			}
			b.WriteByte('}')
		}
		space()
	}
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		value(0)
	}
	b.WriteByte(']')
	return b.String()
}

// randomShortNumber writes a number literal of a few characters whose
// written-out form may be far longer (1e300) or shorter (1.0e0 is 1.0).
func randomShortNumber(rng *rand.Rand) string {
	var b strings.Builder
	if rng.IntN(4) == 0 {
		b.WriteByte('-')
	}
	if rng.IntN(4) == 0 {
		b.WriteByte('0')
	} else {
		fmt.Fprint(&b, 1+rng.IntN(999))
	}
	if rng.IntN(2) == 0 {
		fmt.Fprintf(&b, ".%0*d", 1+rng.IntN(3), rng.IntN(100))
	}
	if rng.IntN(2) == 0 {
		exp := []int{0, 1, 3, 20, 100, 250, 300, 305}[rng.IntN(8)]
		if rng.IntN(2) == 0 {
			exp = -exp
		}
		fmt.Fprintf(&b, "%s%d", []string{"e", "E", "e+"}[rng.IntN(3)], exp)
	}
	// e+ before a negative exponent is not JSON: write it plainly.
	return strings.Replace(b.String(), "e+-", "e-", 1)
}
