package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
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

// boundAt is the address a listener on addr reports.
func boundAt(addr string) net.Addr {
	return net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr))
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
		bound := boundAt(fmt.Sprintf("127.%d.%d.%d:9090", rng.IntN(256), rng.IntN(256), 1+rng.IntN(254)))
		g, err := newHostGuard(bound, allowed)
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
		g, err = newHostGuard(boundAt("0.0.0.0:9090"), allowed)
		require.NoError(t, err)
		if len(allowed) == 0 {
			require.Nil(t, g, "a server beyond loopback does not know its names")
		} else {
			require.False(t, g.allows(asHostHeader(rng, foreign())))
			require.True(t, g.allows(asHostHeader(rng, allowed[0])))
		}
		g, err = newHostGuard(bound, append(allowed, "*"))
		require.NoError(t, err)
		require.Nil(t, g, `"*" serves every name`)
	}
	for _, loopback := range []string{"[::1]:9090", "[::ffff:127.0.0.1]:9090"} {
		g, err := newHostGuard(boundAt(loopback), nil)
		require.NoError(t, err)
		require.NotNil(t, g, "%s is loopback", loopback)
	}
	g, err := newHostGuard(boundAt("[::1]:9090"), nil)
	require.NoError(t, err)
	require.False(t, g.allows(""), "no Host at all")
}

// TestHostGuardRefusesBadNames: an --allow-host value with a scheme, port,
// path or nothing at all is refused with what to give instead.
func TestHostGuardRefusesBadNames(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "https://shop.example", "shop.example:8080", "shop.example/orders", "user@shop.example", "::1", "[::1]:80", "[]"} {
		_, err := newHostGuard(boundAt("127.0.0.1:9090"), []string{bad})
		require.ErrorContains(t, err, fmt.Sprintf("--allow-host %q: want a host name", bad))
	}
	for _, good := range []string{"shop.internal", "10.0.0.5", "[fe80::1]", "Shop.Internal."} {
		_, err := newHostGuard(boundAt("127.0.0.1:9090"), []string{good})
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

// TestServe_GuardsNamesThatBindLoopback: --listen with a name rather than
// an address is guarded when the name binds loopback, as "localhost" does
// and as the machine's own name does where /etc/hosts maps it to
// 127.0.0.1 or 127.0.1.1: a page whose name an attacker points there is
// refused like on --listen 127.0.0.1.
func TestServe_GuardsNamesThatBindLoopback(t *testing.T) {
	t.Parallel()
	names := []string{"localhost"}
	// A name that is no loopback name in itself is the case to cover: the
	// machine's own, or one of the aliases some systems give loopback.
	hostname, err := os.Hostname()
	require.NoError(t, err)
	other := ""
	for _, n := range []string{hostname, "localhost.localdomain", "ip6-localhost", "ip6-loopback", "localhost4"} {
		if isLoopback(n) {
			continue
		}
		ips, err := net.DefaultResolver.LookupNetIP(t.Context(), "ip", n)
		if err != nil || len(ips) == 0 {
			continue
		}
		if !slices.ContainsFunc(ips, func(ip netip.Addr) bool { return !ip.Unmap().IsLoopback() }) {
			other = n
			break
		}
	}
	if other != "" {
		names = append(names, other)
	} else {
		t.Logf("no name here resolves to loopback but localhost; covering localhost only")
	}
	for _, name := range names {
		addr := startServe(t, "serve", "--listen", name+":0")
		_, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		for host, want := range map[string]int{
			"evil.example:" + port: http.StatusForbidden,
			name + ":" + port:      http.StatusOK,
			"localhost:" + port:    http.StatusOK,
		} {
			req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://"+addr+"/api/sagas", nil)
			require.NoError(t, err)
			req.Host = host
			res, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			_ = res.Body.Close()
			if name == other && host == name+":"+port {
				want = http.StatusForbidden // its name is no loopback name, and not allowed
			}
			require.Equal(t, want, res.StatusCode, "--listen %s:0, Host %s", name, host)
		}
	}
}
