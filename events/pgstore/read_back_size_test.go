package pgstore_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/eventstoretest"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestPayloadReadBackSizeMatchesPostgreSQL checks events.PayloadReadBackSize
// against PostgreSQL's own jsonb output, over random documents: never
// below it (Limits would let a payload read back over the limit), and
// exact for a lone number that is not a negative zero (PostgreSQL drops
// that sign; the bound keeps it), so the bound refuses nothing it need not.
func TestPayloadReadBackSizeMatchesPostgreSQL(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	written := func(doc string) int {
		var n int
		require.NoError(t, db.Pool.QueryRow(t.Context(), `SELECT octet_length($1::jsonb::text)`, doc).Scan(&n))
		return n
	}
	for range 300 {
		doc := eventstoretest.RandomNumericDocument(rng, 1+rng.IntN(8))
		bound, err := events.PayloadReadBackSize([]byte(doc))
		require.NoError(t, err)
		got := written(doc)
		require.LessOrEqual(t, got, bound, "%s is written out in %d bytes, more than the bound %d", doc, got, bound)
		if !strings.ContainsAny(doc, " \t\n\\") {
			// Without whitespace or escapes to drop, only negative zeros
			// separate the two, unless the document as sent (which memory
			// gives back) is the longer.
			require.LessOrEqual(t, bound, max(len(doc), got+strings.Count(doc, "-0")), "%s: bound %d, written out %d", doc, bound, got)
		}
	}
	for range 2000 {
		lit := strings.TrimSpace(eventstoretest.RandomNumericDocument(rng, 1))
		lit = strings.TrimSpace(lit[1 : len(lit)-1]) // one value, out of its array
		if lit == "" || !strings.ContainsAny(lit[:1], "-0123456789") {
			continue
		}
		bound, err := events.PayloadReadBackSize([]byte(lit))
		require.NoError(t, err)
		got := written(lit)
		if bound == len(lit) && got < bound {
			continue // as sent is the longer form (1.0e0 is written 1.0)
		}
		if mant, _, _ := strings.Cut(strings.ToLower(lit), "e"); strings.HasPrefix(mant, "-") && strings.Trim(mant, "-0.") == "" {
			require.Equal(t, got+1, bound, "negative zero %s", lit)
			continue
		}
		require.Equal(t, got, bound, "%s is written out in %d bytes", lit, got)
	}
}
