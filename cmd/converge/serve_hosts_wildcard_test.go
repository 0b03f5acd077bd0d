package main

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestHostGuardRefusesWildcards: an --allow-host pattern is refused,
// saying wildcards other than a lone "*" are not supported, rather than
// accepted to match no Host header (allows compares names exactly): off
// loopback it would turn "every name is served" into "only loopback
// names", every real client refused with 403.
func TestHostGuardRefusesWildcards(t *testing.T) {
	t.Parallel()
	for _, v := range []string{"*.shop.internal", "shop.*", "sh?p.internal", "*.*", "**", "[*]", "*shop.internal", "shop.internal*", "10.0.0.*"} {
		for _, bound := range []string{"127.0.0.1:9090", "10.0.0.5:9090"} {
			g, err := newHostGuard(boundAt(bound), []string{v})
			require.Nil(t, g)
			require.ErrorContains(t, err, fmt.Sprintf("--allow-host %q: want a host name", v), "bound at %s", bound)
			require.ErrorContains(t, err, `wildcards are not supported, but for a lone "*"`, v)
		}
	}
	g, err := newHostGuard(boundAt("10.0.0.5:9090"), []string{"shop.internal", "*"})
	require.NoError(t, err)
	require.Nil(t, g, `a lone "*" still serves any name`)
}

// TestHostGuardValidatesNames: a value with a character no host name
// holds, at any place, is refused, naming the value; a DNS name (any
// case, maybe with a trailing dot), an IPv4 address or a bracketed IPv6
// address is accepted and then served, on loopback and off it.
func TestHostGuardValidatesNames(t *testing.T) {
	t.Parallel()
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 12))
	dnsName := func() string {
		labels := make([]string, 1+rng.IntN(4))
		for i := range labels {
			labels[i] = randomLabel(rng)
		}
		return strings.Join(labels, ".")
	}
	// valid returns an --allow-host value and the name a client writes in
	// Host for it (asHostHeader brackets an IPv6 address itself).
	valid := func() (value, name string) {
		switch rng.IntN(4) {
		case 0:
			n := fmt.Sprintf("%d.%d.%d.%d", rng.IntN(256), rng.IntN(256), rng.IntN(256), rng.IntN(256))
			return n, n
		case 1:
			var b [16]byte
			for i := range b {
				b[i] = byte(rng.IntN(256))
			}
			if rng.IntN(3) == 0 {
				b = [16]byte{0xfe, 0x80, 15: byte(rng.IntN(256))}
			}
			n := netip.AddrFrom16(b).String()
			return "[" + n + "]", n
		}
		n := dnsName()
		v := []byte(n)
		for i := range v {
			if rng.IntN(2) == 0 {
				v[i] = strings.ToUpper(string(v[i]))[0]
			}
		}
		if rng.IntN(3) == 0 {
			return string(v) + ".", n
		}
		return string(v), n
	}
	const notInHostNames = "*?!$&'()+,;=~%\"<>^`{|}\\/@: \t[]#é日"
	for range 500 {
		v, name := valid()
		for _, bound := range []string{"127.0.0.1:9090", "10.0.0.5:9090"} {
			g, err := newHostGuard(boundAt(bound), []string{v})
			require.NoError(t, err, "--allow-host %q", v)
			require.NotNil(t, g, "--allow-host %q", v)
			h := asHostHeader(rng, name)
			require.True(t, g.allows(h), "--allow-host %q bound at %s refuses Host %q", v, bound, h)
		}

		n := dnsName()
		chars := []rune(notInHostNames)
		c := string(chars[rng.IntN(len(chars))])
		at := rng.IntN(len(n) + 1)
		bad := n[:at] + c + n[at:]
		g, err := newHostGuard(boundAt("10.0.0.5:9090"), []string{bad})
		require.Nil(t, g, "--allow-host %q", bad)
		require.ErrorContains(t, err, fmt.Sprintf("--allow-host %q: want a host name", bad))
	}
	for _, bad := range []string{
		"shop..internal", ".shop.internal", "shop.internal..", strings.Repeat("a", 64) + ".internal",
		strings.Repeat("abcdefghi.", 26) + "internal", "[10.0.0.5]", "[shop.internal]", "[fe80::1", "fe80::1]", "10.0.0.5/24", "shöp.internal",
	} {
		_, err := newHostGuard(boundAt("10.0.0.5:9090"), []string{bad})
		require.ErrorContains(t, err, fmt.Sprintf("--allow-host %q: want a host name", bad))
	}
	_, err := newHostGuard(boundAt("10.0.0.5:9090"), []string{"sh!op.internal"})
	require.ErrorContains(t, err, `not '!'`)
	_, err = newHostGuard(boundAt("10.0.0.5:9090"), []string{"shöp.internal"})
	require.ErrorContains(t, err, "xn--")
	for _, good := range []string{strings.Repeat("a", 63) + ".internal", "xn--shp-sna.internal", "my_service", "db_1.internal", "SHOP-1.Internal.", "[::ffff:10.0.0.5]", "[FE80::1]"} {
		_, err := newHostGuard(boundAt("10.0.0.5:9090"), []string{good})
		require.NoError(t, err, good)
	}
}
