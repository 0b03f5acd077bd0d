package consistency_test

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// queryRead is what a GET with a raw query got, from TokenFromRequest and
// from Middleware.
type queryRead struct {
	tok    events.Token
	ok     bool
	err    error
	rec    *httptest.ResponseRecorder
	ran    bool
	status consistency.Status
}

// readQuery sends rawQuery (and header, when not empty) to TokenFromRequest
// and to a Middleware over tr that does not wait (X-Consistency-Timeout: 0).
func readQuery(t *testing.T, tr *consistency.Tracker, rawQuery, header string) queryRead {
	t.Helper()
	newReq := func() *http.Request {
		req := httptest.NewRequest(http.MethodGet, "/orders", nil)
		// Set directly: the test controls every byte ParseQuery would see.
		req.URL.RawQuery = rawQuery
		req.Header.Set(consistency.HeaderTimeout, "0")
		if header != "" {
			req.Header.Set(consistency.HeaderPosition, header)
		}
		return req
	}
	var got queryRead
	got.tok, got.ok, got.err = consistency.TokenFromRequest(newReq())
	h := consistency.Middleware(tr, &consistency.HTTPConfig{Names: []string{"orders"}})(
		http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			got.ran = true
			got.status, _ = consistency.StatusFromContext(r.Context())
		}))
	got.rec = httptest.NewRecorder()
	h.ServeHTTP(got.rec, newReq())
	return got
}

// requireRefused checks that got is the 400 a malformed query token gets.
func requireRefused(t *testing.T, got queryRead, msgAndArgs ...any) {
	t.Helper()
	var pe *consistency.ParameterError
	require.ErrorAs(t, got.err, &pe, msgAndArgs...)
	require.Equal(t, consistency.QueryParam, pe.Parameter, msgAndArgs...)
	require.ErrorIs(t, got.err, events.ErrInvalidToken, msgAndArgs...)
	require.False(t, got.ok, msgAndArgs...)

	require.False(t, got.ran, msgAndArgs...)
	require.Equal(t, http.StatusBadRequest, got.rec.Code, msgAndArgs...)
	require.Equal(t, consistency.ContentTypeProblem, got.rec.Header().Get("Content-Type"), msgAndArgs...)
	require.Empty(t, got.rec.Header().Get(consistency.HeaderStale), msgAndArgs...)
	require.Contains(t, got.rec.Body.String(), `"parameter":"`+consistency.QueryParam+`"`, msgAndArgs...)
}

// TestTokenFromRequest_UndecodableQueryIsRefused: url.ParseQuery drops a
// pair it cannot decode (a bad %-escape, a ';'); a token in such a pair is
// a 400, never read as no token, which would skip the wait and label the
// read fresh. The read model here is behind every token, so a token taken
// for none shows as a fresh read instead of a stale one.
func TestTokenFromRequest_UndecodableQueryIsRefused(t *testing.T) {
	t.Parallel()
	tr := setup(t, nil)
	tr.Advance("orders", tok(1))
	good := events.MakeToken(9, 9).String()
	p := consistency.QueryParam

	for _, q := range []string{
		p + "=" + good + "%",
		p + "=" + good + "%zz",
		p + "=" + good + ";",
		p + "=v2.---%zz",
		p + "=" + good[:5] + "%g1" + good[5:],
		"page=2&" + p + "=" + good + ";page=3",
		"page=2;" + p + "=" + good,
		p + "%=" + good,
		p + "%zz=" + good,
		p + ";=" + good,
		"x=1&" + p + "=" + good + "&" + p + "=" + good + "%",
	} {
		requireRefused(t, readQuery(t, tr, q, ""), "query %q", q)
		requireRefused(t, readQuery(t, tr, q, good), "query %q with the header", q)
	}
}

// TestTokenFromRequest_QueryTokensAtRandom: random valid tokens, sent in
// the query among decoy pairs. Intact, each is read (the decoys, some of
// them undecodable, are the application's and are left alone, as
// ParseQuery leaves them). With random garbage holding a bad %-escape or a
// ';' put in the value or after the name, each is refused.
func TestTokenFromRequest_QueryTokensAtRandom(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	tr := setup(t, nil)
	tr.Advance("orders", tok(1))

	const chars = "-0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz%;=+. ~!*'()"
	garbage := func(poison string) string {
		var b strings.Builder
		for range rng.IntN(4) {
			b.WriteByte(chars[rng.IntN(len(chars))])
		}
		g := b.String()
		at := rng.IntN(len(g) + 1)
		return g[:at] + poison + g[at:]
	}
	insert := func(s, g string) string {
		at := rng.IntN(len(s) + 1)
		return s[:at] + g + s[at:]
	}
	// Pairs of the application's: valid, undecodable, or near the name.
	decoys := []string{"page=2", "q=a%20b", "x=%zz", "a=1;b=2", "", "consistency_position_x=%zz", "consistency_positio=1", "%zz=1"}
	query := func(pair string) string {
		pairs := []string{pair}
		for range rng.IntN(4) {
			pairs = append(pairs, decoys[rng.IntN(len(decoys))])
		}
		rng.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
		return strings.Join(pairs, "&")
	}

	for round := range 300 {
		want := events.MakeToken(2+rng.Uint64N(1<<40), rng.Uint64())
		key := consistency.QueryParam
		if rng.IntN(4) == 0 {
			key = "consistency%5Fposition" // the same name, %-encoded
		}
		header := ""
		if rng.IntN(3) == 0 {
			header = want.String()
		}

		q := query(key + "=" + want.String())
		got := readQuery(t, tr, q, header)
		require.NoError(t, got.err, "round %d: intact %q", round, q)
		require.True(t, got.ok, "round %d: %q", round, q)
		require.Equal(t, want, got.tok, "round %d: %q", round, q)
		require.Equal(t, http.StatusOK, got.rec.Code, "round %d: %q", round, q)
		require.True(t, got.ran, "round %d: %q", round, q)
		require.Equal(t, want, got.status.Target, "round %d: %q", round, q)
		require.Equal(t, "true", got.rec.Header().Get(consistency.HeaderStale), "round %d: %q: the read model is behind", round, q)

		// Each poison makes decoding fail wherever it lands: a '%' then a
		// character that is not hex, or too near the end for two.
		var bad string
		switch rng.IntN(3) {
		case 0: // after the name
			poison := []string{"%z", "%zz", "%g4", "%%", ";", "%="}[rng.IntN(6)]
			bad = query(key + poison + garbage("") + "=" + want.String())
		case 1: // in the value
			poison := []string{";", "%g", "%z", "%%", "%;", "%-", "%.", "%~"}[rng.IntN(8)]
			bad = query(key + "=" + insert(want.String(), garbage(poison)))
		default: // at the end of the value
			poison := []string{"%", "%4", "%a", ";"}[rng.IntN(4)]
			bad = query(key + "=" + insert(want.String(), garbage("")) + poison)
		}
		requireRefused(t, readQuery(t, tr, bad, header), "round %d: %q", round, bad)
	}
}

// TestTokenFromRequest_ValidQueryUnchanged pins the behaviour the
// undecodable-pair check must not change: a repeated query token (even
// the same one twice) and a query token that differs from the header are
// refused; one that agrees with the header is read.
func TestTokenFromRequest_ValidQueryUnchanged(t *testing.T) {
	t.Parallel()
	tr := setup(t, nil)
	one, two := tok(1).String(), tok(2).String()
	p := consistency.QueryParam

	got := readQuery(t, tr, p+"="+one+"&"+p+"="+one, "")
	requireRefused(t, got)
	require.ErrorContains(t, got.err, "sent 2 times")

	got = readQuery(t, tr, p+"="+two, one)
	requireRefused(t, got)
	require.ErrorContains(t, got.err, "differ")

	got = readQuery(t, tr, "a=%zz&"+p+"="+one, one)
	require.NoError(t, got.err)
	require.Equal(t, tok(1), got.tok)

	got = readQuery(t, tr, "a=%zz;b", "")
	require.NoError(t, got.err)
	require.False(t, got.ok, "no token: the undecodable pair is not ours")

	var pe *consistency.ParameterError
	got = readQuery(t, tr, p+"="+one+"%zz", "")
	require.True(t, errors.As(got.err, &pe))
	require.Equal(t, one+"%zz", pe.Value, "the problem shows what the client sent")
}
