package migrations

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestServerVersionRule: over random server versions, the check refuses
// exactly those below PostgreSQL 13, naming the server's version and the
// one needed. (Only a PostgreSQL 15 server is at hand, so the rule is
// tested apart from the query that feeds it, which every PostgreSQL test
// runs through Migrate and pgstore.New.)
func TestServerVersionRule(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 13))
	for range 1000 {
		major := 9 + rng.IntN(12)
		minor := rng.IntN(30)
		num := major*10000 + minor
		version := fmt.Sprintf("%d.%d", major, minor)
		if rng.IntN(4) == 0 {
			version += " (Debian " + version + "-1.pgdg120+1)"
		}
		err := serverVersionError(num, version)
		if major >= 13 {
			require.NoError(t, err, version)
			continue
		}
		require.Error(t, err, version)
		require.ErrorContains(t, err, "PostgreSQL 13 or later")
		require.ErrorContains(t, err, "this server is "+version)
	}
	require.NoError(t, serverVersionError(MinServerVersionNum, "13.0"), "13.0 itself is enough")
	require.Error(t, serverVersionError(MinServerVersionNum-1, "12.99"))
}
