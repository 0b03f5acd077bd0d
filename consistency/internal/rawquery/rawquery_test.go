package rawquery_test

import (
	"errors"
	"math/rand/v2"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/internal/rawquery"
)

// TestValues: on random queries, Values returns what url.ParseQuery
// keeps for the parameter, unless ParseQuery drops a pair naming it: then
// Values is an *Error instead of a silently shorter list.
func TestValues(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	const param = "entity"
	atoms := []string{"entity", "ent", "other", "=", "=", "&", "&", ";", "%", "%3B", "%ZZ", "%2", "a", "b1", "+", "%65ntity", "é"}
	for range 5000 {
		var sb strings.Builder
		for range rng.IntN(12) {
			sb.WriteString(atoms[rng.IntN(len(atoms))])
		}
		raw := sb.String()
		got, err := rawquery.Values(raw, param)
		kept, _ := url.ParseQuery(raw)
		// Does ParseQuery drop a pair naming param? Each '&' piece it
		// cannot decode, split at ';' and read alone, tells.
		dropped := false
		for pair := range strings.SplitSeq(raw, "&") {
			if _, perr := url.ParseQuery(pair); perr == nil {
				continue
			}
			for piece := range strings.SplitSeq(pair, ";") {
				key, _, _ := strings.Cut(piece, "=")
				if k, kerr := url.QueryUnescape(key); kerr == nil && k == param ||
					kerr != nil && namesBeforeBadEscape(key, param) {
					dropped = true
				}
			}
		}
		if !dropped {
			require.NoError(t, err, "query %q", raw)
			require.Equal(t, kept[param], got, "query %q", raw)
			continue
		}
		var qe *rawquery.Error
		require.True(t, errors.As(err, &qe), "query %q: %v", raw, err)
		require.Equal(t, param, qe.Param)
	}
}

// namesBeforeBadEscape reports whether key, up to its first '%' not
// followed by two hex digits, decodes to param.
func namesBeforeBadEscape(key, param string) bool {
	hex := func(c byte) bool { return strings.IndexByte("0123456789abcdefABCDEF", c) >= 0 }
	for i := 0; i < len(key); i++ {
		if key[i] == '%' && (i+2 >= len(key) || !hex(key[i+1]) || !hex(key[i+2])) {
			k, err := url.QueryUnescape(key[:i])
			return err == nil && k == param
		}
	}
	return false
}
