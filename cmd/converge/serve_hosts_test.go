package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// randomLabel is a DNS label of 1 to 12 letters, digits and inner hyphens.
func randomLabel(rng *rand.Rand) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 1+rng.IntN(12))
	for i := range b {
		b[i] = chars[rng.IntN(len(chars))]
		if i > 0 && i < len(b)-1 && rng.IntN(8) == 0 {
			b[i] = '-'
		}
	}
	return string(b)
}

// asHostHeader writes name as a client might in Host: random case, maybe
// a port, maybe a trailing dot, an IPv6 literal in brackets.
func asHostHeader(rng *rand.Rand, name string) string {
	b := []byte(name)
	for i := range b {
		if rng.IntN(2) == 0 {
			b[i] = strings.ToUpper(string(b[i]))[0]
		}
	}
	h := string(b)
	if rng.IntN(3) == 0 && !strings.Contains(h, ":") {
		h += "."
	}
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if rng.IntN(2) == 0 {
		h = fmt.Sprintf("%s:%d", h, 1+rng.IntN(65535))
	}
	return h
}

// TestHostGuard: on a loopback address serve answers to loopback names
// and the --allow-host names only, however a client writes them (case,
// port, trailing dot), and refuses every other name; "*" or a server
// beyond loopback without --allow-host answers to any.
func TestHostGuard(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 11))
	foreign := func() string {
		for {
			n := randomLabel(rng) + "." + randomLabel(rng)
			if rng.IntN(3) == 0 {
				n = fmt.Sprintf("%d.%d.%d.%d", 1+rng.IntN(126), rng.IntN(256), rng.IntN(256), rng.IntN(256))
			}
			if !strings.HasSuffix(n, ".localhost") {
				return n
			}
		}
	}
	loopback := func() string {
		switch rng.IntN(4) {
		case 0:
			return "localhost"
		case 1:
			return randomLabel(rng) + ".localhost"
		case 2:
			return fmt.Sprintf("127.%d.%d.%d", rng.IntN(256), rng.IntN(256), rng.IntN(256))
		}
		return "::1"
	}
	for range 200 {
		var allowed []string
		for range rng.IntN(3) {
			allowed = append(allowed, foreign())
		}
		g, err := newHostGuard("127.0.0.1:9090", allowed)
		require.NoError(t, err)
		require.NotNil(t, g)
		for range 20 {
			h := asHostHeader(rng, loopback())
			require.True(t, g.allows(h), "loopback name %q refused", h)
			h = asHostHeader(rng, foreign())
			require.False(t, g.allows(h), "%q served, though only %q are allowed", h, allowed)
		}
		for _, a := range allowed {
			h := asHostHeader(rng, a)
			require.True(t, g.allows(h), "%q refused, though allowed by %q", h, allowed)
		}

		// Beyond loopback, --allow-host restricts; without it, no guard.
		g, err = newHostGuard("0.0.0.0:9090", allowed)
		require.NoError(t, err)
		if len(allowed) == 0 {
			require.Nil(t, g, "a server beyond loopback does not know its names")
		} else {
			require.False(t, g.allows(asHostHeader(rng, foreign())))
			require.True(t, g.allows(asHostHeader(rng, allowed[0])))
		}
		g, err = newHostGuard("127.0.0.1:9090", append(allowed, "*"))
		require.NoError(t, err)
		require.Nil(t, g, `"*" serves every name`)
	}
	g, err := newHostGuard("[::1]:9090", nil)
	require.NoError(t, err)
	require.NotNil(t, g, "::1 is loopback")
	require.False(t, g.allows(""), "no Host at all")
}

// TestHostGuardRefusesBadNames: an --allow-host value with a scheme, port,
// path or nothing at all is refused with what to give instead.
func TestHostGuardRefusesBadNames(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "https://shop.example", "shop.example:8080", "shop.example/orders", "user@shop.example", "::1", "[::1]:80", "[]"} {
		_, err := newHostGuard("127.0.0.1:9090", []string{bad})
		require.ErrorContains(t, err, fmt.Sprintf("--allow-host %q: want a host name", bad))
	}
	for _, good := range []string{"shop.internal", "10.0.0.5", "[fe80::1]", "Shop.Internal."} {
		_, err := newHostGuard("127.0.0.1:9090", []string{good})
		require.NoError(t, err, good)
	}
}

// TestServe_RefusesForeignHosts: serve on 127.0.0.1 refuses a request
// for another name (what a DNS-rebinding page sends) on every path, the
// API's and the operations endpoints alike, and serves localhost and the
// --allow-host names.
func TestServe_RefusesForeignHosts(t *testing.T) {
	t.Parallel()
	addr := startServe(t, "serve", "--listen", "127.0.0.1:0", "--allow-host", "shop.internal")
	_, port, _ := strings.Cut(addr, ":")
	get := func(host, path string) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+path, nil)
		require.NoError(t, err)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer res.Body.Close()
		body, err := io.ReadAll(io.LimitReader(res.Body, 4096))
		require.NoError(t, err)
		return res.StatusCode, string(body)
	}
	for _, path := range []string{"/", "/orders/o-1", "/healthz", "/metrics", "/dashboard"} {
		code, body := get("evil.example:"+port, path)
		require.Equal(t, http.StatusForbidden, code, path)
		require.Contains(t, body, `does not answer to host "evil.example:`+port+`"`)
		require.Contains(t, body, "--allow-host")
		for _, host := range []string{"localhost:" + port, "127.0.0.1:" + port, "shop.internal:" + port} {
			code, _ := get(host, path)
			require.NotEqual(t, http.StatusForbidden, code, "%s%s", host, path)
		}
	}
}
