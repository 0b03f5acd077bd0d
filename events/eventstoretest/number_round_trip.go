package eventstoretest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// testNumbersRoundTrip checks the promise that what ValidatePayload accepts
// reads back equal by EqualJSON, for random number literals of every
// shape (long mantissas, long runs of zeros, big exponents, negative zero):
// PostgreSQL writes numbers out in full, so they come back spelled
// differently, often much longer or shorter. Appending the same events
// again must then be recognised as a retry (AlreadyStored, the original
// token), which is how Append retries itself and how callers resolve
// ErrOutcomeUnknown.
func testNumbersRoundTrip(t *testing.T, s events.Store) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	// 1e-300 in 1006 characters: within float64's range, and 300 digits
	// after the point once the exponent applies.
	accepted := []string{"0." + strings.Repeat("0", 999) + "1e700", "-0", "-0.000e-5", "0e9999", "-1" + strings.Repeat("0", 300) + "e-400"}
	for _, n := range accepted {
		require.NoError(t, events.ValidatePayload([]byte(n)), "%.60s…", n)
	}
	for range 3000 {
		n := randomNumberLiteral(rng)
		if events.ValidatePayload([]byte(n)) == nil {
			accepted = append(accepted, n)
		}
	}
	const perEvent = 100
	for i := 0; i < len(accepted); i += perEvent {
		chunk := accepted[i:min(i+perEvent, len(accepted))]
		payload := json.RawMessage("[" + strings.Join(chunk, ",") + "]")
		ev := events.Event{ID: newID(), Data: events.Raw{Type: orderPlacedType, Payload: payload}}
		stream := fmt.Sprintf("numbers-%d", i)
		first, err := s.Append(ctx, stream, events.NoStream, ev)
		require.NoError(t, err)
		got, err := s.ReadStream(ctx, stream, 1, 0)
		require.NoError(t, err)
		require.Len(t, got, 1)
		var back []json.RawMessage
		require.NoError(t, json.Unmarshal(got[0].Payload, &back))
		require.Len(t, back, len(chunk))
		for j, n := range chunk {
			require.True(t, events.EqualJSON([]byte(n), back[j]), "%.60s… (%d characters) read back as %.60s… (%d characters)", n, len(n), back[j], len(back[j]))
		}
		for _, expected := range []events.ExpectedVersion{events.NoStream, events.AnyVersion} {
			again, err := s.Append(ctx, stream, expected, ev)
			require.NoError(t, err, "the same append again is a retry (numbers %.60s…)", payload)
			require.True(t, again.AlreadyStored)
			require.Equal(t, first.Token, again.Token)
		}
	}
}

// randomNumberLiteral writes a JSON number literal of a random shape,
// most of them within what ValidatePayload accepts.
func randomNumberLiteral(rng *rand.Rand) string {
	lengths := []int{1, 2, 5, 15, 16, 17, 20, 40, 300, 400, 600, 1100}
	digits := func(b *strings.Builder, n int, lead bool) {
		for i := range n {
			d := rng.IntN(10)
			if rng.IntN(3) == 0 {
				d = 0 // runs of zeros
			}
			if i == 0 && lead && d == 0 {
				d = 1 + rng.IntN(9)
			}
			b.WriteByte(byte('0' + d))
		}
	}
	var b strings.Builder
	if rng.IntN(3) == 0 {
		b.WriteByte('-')
	}
	if rng.IntN(3) == 0 {
		b.WriteByte('0')
	} else {
		digits(&b, lengths[rng.IntN(len(lengths))], true)
	}
	if rng.IntN(2) == 0 {
		b.WriteByte('.')
		if rng.IntN(3) == 0 {
			b.WriteString(strings.Repeat("0", lengths[rng.IntN(len(lengths))]))
		}
		digits(&b, lengths[rng.IntN(len(lengths))], false)
	}
	if rng.IntN(2) == 0 {
		b.WriteString([]string{"e", "E", "e+", "e-", "E-"}[rng.IntN(5)])
		fmt.Fprint(&b, []int{0, 1, 5, 20, 300, 308, 309, 400, 700, 1000, 1200, 9999}[rng.IntN(12)])
	}
	return b.String()
}
