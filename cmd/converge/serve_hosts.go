package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// hostGuard answers only requests whose Host header names this server.
//
// A server on a loopback address is out of other machines' reach, but not
// out of a browser's: a page on evil.example can have its name resolve to
// 127.0.0.1 (DNS rebinding), and the browser then sends that page's
// requests, reads included, to the local server as same-origin. Those
// requests still carry Host: evil.example, so refusing unknown names stops
// them. Loopback names (localhost, *.localhost, 127.0.0.0/8, ::1) are
// always served: a browser resolves them itself.
type hostGuard struct {
	names map[string]bool
}

// newHostGuard returns the guard for a server listening on bound, the
// address its listener reports, with --allow-host values allowed, or nil
// when every host is served: allowed holds "*", or the server listens
// beyond loopback and allowed is empty (the names it is reached by are
// not known then).
//
// It decides from the address bound, not from --listen's text: a name
// there, such as the machine's own (which /etc/hosts may map to
// 127.0.1.1), can bind loopback as well as "localhost" does.
func newHostGuard(bound net.Addr, allowed []string) (*hostGuard, error) {
	names, all, err := allowedHosts(allowed)
	if err != nil || all {
		return nil, err
	}
	if len(names) == 0 && !boundToLoopback(bound) {
		return nil, nil
	}
	return &hostGuard{names: names}, nil
}

// boundToLoopback reports whether a listener's address is a loopback one.
func boundToLoopback(bound net.Addr) bool {
	addr, err := netip.ParseAddrPort(bound.String())
	return err == nil && addr.Addr().Unmap().IsLoopback()
}

// allowedHosts reads --allow-host values: the names served besides the
// loopback ones, or any when a value is "*".
func allowedHosts(allowed []string) (names map[string]bool, all bool, err error) {
	names = map[string]bool{}
	for _, h := range allowed {
		if h == "*" {
			return nil, true, nil
		}
		name, err := allowedHost(h)
		if err != nil {
			return nil, false, err
		}
		names[name] = true
	}
	return names, false, nil
}

// allowedHost returns the name an --allow-host value other than "*" lets
// through, as hostName writes it: a host name (letters, digits, '-', '_'
// and '.', with an optional trailing dot; '_' is no DNS host name's, but
// container networks name services with it), an IPv4 address or an IPv6
// address in brackets. Anything else is refused rather than accepted to
// match no Host header: allows compares names exactly, so a pattern such
// as *.shop.internal would serve none of the names it seems to, and off
// loopback it would turn "every name is served" into "none but loopback".
func allowedHost(h string) (string, error) {
	name, ok := hostName(h)
	_, _, withPort := net.SplitHostPort(h)
	bracketed := strings.HasPrefix(h, "[")
	if ok && withPort != nil && (bracketed || !strings.Contains(h, ":")) {
		ip, err := netip.ParseAddr(name)
		switch {
		case bracketed && err == nil && ip.Is6():
			return name, nil
		case !bracketed && (err == nil && ip.Is4() || isDNSName(name)):
			return name, nil
		}
	}
	msg := fmt.Sprintf("--allow-host %q: want a host name or address such as shop.internal, 10.0.0.5 or [fe80::1], without scheme, port or path", h)
	if strings.ContainsAny(h, "*?") {
		msg += `; wildcards are not supported, but for a lone "*" that serves any name: give each name its own --allow-host`
	} else if i := strings.IndexFunc(h, func(r rune) bool { return !isHostChar(r) && !strings.ContainsRune("[]:", r) }); i >= 0 {
		c, _ := utf8.DecodeRuneInString(h[i:])
		msg += fmt.Sprintf("; a host name holds letters, digits, '-', '_' and '.' only, not %q (an internationalised name goes in its xn-- form)", c)
	}
	return "", errors.New(msg)
}

// isDNSName reports whether name, lower-cased and without its trailing
// dot, is a host name: labels of 1 to 63 letters, digits, hyphens and
// underscores, separated by dots, 253 bytes at most.
func isDNSName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" || len(label) > 63 || strings.IndexFunc(label, func(r rune) bool { return !isHostChar(r) || r == '.' }) >= 0 {
			return false
		}
	}
	return true
}

// isHostChar reports whether r may be in a host name.
func isHostChar(r rune) bool {
	return 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '_' || r == '.'
}

// allows reports whether a request with this Host header is served.
func (g *hostGuard) allows(host string) bool {
	name, ok := hostName(host)
	if !ok {
		return false
	}
	return isLoopback(name) || g.names[name]
}

// wrap refuses requests for other hosts with 403 before next sees them.
func (g *hostGuard) wrap(next http.Handler) http.Handler {
	if g == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.allows(r.Host) {
			http.Error(w, fmt.Sprintf("serve: this server does not answer to host %q (it answers to loopback names: localhost and its subdomains, 127.0.0.0/8, [::1], and the names given by --allow-host); start it with --allow-host NAME to serve it under that name", r.Host), http.StatusForbidden)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// hostName returns a Host header's name without its port, lower-cased and
// without a trailing dot, and an IPv6 literal without its brackets; false
// when nothing is left.
func hostName(host string) (string, bool) {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if host == "" || strings.ContainsAny(host, "[]/@ ") {
		return "", false
	}
	return host, true
}

// isLoopback reports whether name is a loopback address or a name every
// resolver must send to loopback (RFC 6761: localhost and its subdomains).
func isLoopback(name string) bool {
	name = strings.TrimSuffix(strings.ToLower(name), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return true
	}
	ip, err := netip.ParseAddr(strings.Trim(name, "[]"))
	return err == nil && ip.Unmap().IsLoopback()
}
