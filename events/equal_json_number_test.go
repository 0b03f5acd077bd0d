package events_test

import (
	"math/big"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// TestEqualJSONNumbersAtAnyLength checks that EqualJSON compares numbers by
// value whatever their length: PostgreSQL writes a number out in full, so
// a literal comes back spelled differently, and longer or shorter.
func TestEqualJSONNumbersAtAnyLength(t *testing.T) {
	t.Parallel()
	long := "0." + strings.Repeat("0", 999) + "1e700" // 1e-300, in 1006 characters
	cases := []struct {
		a, b  string
		equal bool
	}{
		{long, "0." + strings.Repeat("0", 299) + "1", true},
		{long, "1e-300", true},
		{long, "1e-301", false},
		{long, "0." + strings.Repeat("0", 999) + "2e700", false},
		{"1" + strings.Repeat("0", 1200) + "e-1000", "1e200", true},
		{"1" + strings.Repeat("0", 1200) + "e-1000", "1e201", false},
		{"12345678901234567890" + strings.Repeat("0", 1100) + "e-1100", "12345678901234567890", true},
		{"12345678901234567890" + strings.Repeat("0", 1100) + "e-1100", "12345678901234567891", false},
		{"1e99999999999999999999999", "10e99999999999999999999998", true},
		{"1e99999999999999999999999", "1e99999999999999999999998", false},
		{"1e-99999999999999999999999", "0.1e-99999999999999999999998", true},
		{"1e9223372036854775807", "10e9223372036854775806", true},
		{"-0", "0", true},
		{"-0.000e-99999999999999999999", "0e5", true},
		{"-1", "1", false},
		{"-1.50", "-15e-1", true},
		{"100", "1E+2", true},
		{"0.0005", "0.5e-3", true},
		{"120", "12", false},
	}
	for _, c := range cases {
		require.Equal(t, c.equal, events.EqualJSON([]byte(c.a), []byte(c.b)), "%.40s… = %.40s…", c.a, c.b)
		require.Equal(t, c.equal, events.EqualJSON([]byte(c.b), []byte(c.a)), "%.40s… = %.40s…", c.b, c.a)
	}
}

// TestEqualJSONNumbersProperty checks, on random values each written in
// several random spellings (leading and trailing zeros, the point moved,
// exponents up to far beyond int64), that EqualJSON finds every spelling
// equal, a value one digit or one power of ten away unequal, and agrees
// with big.Rat where the exponent is small enough for it.
func TestEqualJSONNumbersProperty(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 11))
	for range 3000 {
		neg := rng.IntN(2) == 0
		digits := randomSignificand(rng)
		exp := randomExponent(rng)
		a := spellNumber(rng, neg, digits, exp)
		b := spellNumber(rng, neg, digits, exp)
		require.True(t, events.EqualJSON([]byte(a), []byte(b)), "%s = %s", a, b)

		other := spellNumber(rng, neg, digits, new(big.Int).Add(exp, big.NewInt(1)))
		require.False(t, events.EqualJSON([]byte(a), []byte(other)), "%s ≠ %s", a, other)
		changed := []byte(digits)
		i := rng.IntN(len(changed))
		changed[i] = '1' + (changed[i]-'0')%9 // another non-zero digit
		other = spellNumber(rng, neg, string(changed), exp)
		require.False(t, events.EqualJSON([]byte(a), []byte(other)), "%s ≠ %s", a, other)
		other = spellNumber(rng, !neg, digits, exp)
		require.False(t, events.EqualJSON([]byte(a), []byte(other)), "%s ≠ %s", a, other)

		if exp.IsInt64() && exp.Int64() > -400 && exp.Int64() < 400 {
			c := spellNumber(rng, rng.IntN(2) == 0, randomSignificand(rng), big.NewInt(exp.Int64()+int64(rng.IntN(3)-1)))
			ra, _ := new(big.Rat).SetString(a)
			rc, _ := new(big.Rat).SetString(c)
			require.Equal(t, ra.Cmp(rc) == 0, events.EqualJSON([]byte(a), []byte(c)), "%s = %s", a, c)
		}
	}
	for range 200 { // zero, however written
		a := spellNumber(rng, rng.IntN(2) == 0, "", randomExponent(rng))
		b := spellNumber(rng, rng.IntN(2) == 0, "", randomExponent(rng))
		require.True(t, events.EqualJSON([]byte(a), []byte(b)), "%s = %s", a, b)
	}
}

// randomSignificand returns significant digits: no leading or trailing
// zero, often long.
func randomSignificand(rng *rand.Rand) string {
	n := []int{1, 2, 3, 15, 17, 40, 400, 1100}[rng.IntN(8)]
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('0' + rng.IntN(10))
	}
	b[0] = byte('1' + rng.IntN(9))
	b[n-1] = byte('1' + rng.IntN(9))
	return string(b)
}

func randomExponent(rng *rand.Rand) *big.Int {
	switch rng.IntN(4) {
	case 0:
		return big.NewInt(int64(rng.IntN(41) - 20))
	case 1:
		return big.NewInt(int64(rng.IntN(2001) - 1000))
	case 2:
		return big.NewInt(rng.Int64() - rng.Int64())
	default:
		e, _ := new(big.Int).SetString("1"+strings.Repeat("0", 20+rng.IntN(10)), 10)
		if rng.IntN(2) == 0 {
			e.Neg(e)
		}
		return e.Add(e, big.NewInt(int64(rng.IntN(1000))))
	}
}

// spellNumber writes the JSON literal of ±digits × 10^exp in a random
// spelling: trailing zeros added to the digits, leading zeros before
// them, the decimal point anywhere, the exponent adjusted to match and
// written with e, E, e+ or not at all when it is zero.
func spellNumber(rng *rand.Rand, neg bool, digits string, exp *big.Int) string {
	zeros := rng.IntN(4)
	if rng.IntN(8) == 0 {
		zeros = 1100
	}
	s := strings.Repeat("0", rng.IntN(3)) + digits + strings.Repeat("0", zeros)
	if s == "" {
		s = "0"
	}
	frac := rng.IntN(len(s) + 1)
	// value = s × 10^(exp - zeros) = (s / 10^frac) × 10^(exp - zeros + frac)
	x := new(big.Int).Add(exp, big.NewInt(int64(frac-zeros)))
	intPart, fracPart := strings.TrimLeft(s[:len(s)-frac], "0"), s[len(s)-frac:]
	if intPart == "" {
		intPart = "0"
	}
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	b.WriteString(intPart)
	if fracPart != "" {
		b.WriteString("." + fracPart)
	}
	if x.Sign() != 0 || rng.IntN(2) == 0 {
		marks := []string{"e", "E", "e+"}
		if x.Sign() < 0 {
			marks = []string{"e-", "E-"}
			x.Neg(x)
		}
		b.WriteString(marks[rng.IntN(len(marks))] + x.String())
	}
	return b.String()
}
