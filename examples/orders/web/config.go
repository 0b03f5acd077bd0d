package web

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
)

// DefaultMaxBodyBytes caps a request body: an order is a few dozen bytes.
const DefaultMaxBodyBytes = 16 << 10

// Config configures a Server. Orders, Tracker and ReadModels are required.
type Config struct {
	// Orders is the order domain. Required.
	Orders Orders
	// Tracker is what GET /orders and GET /orders/{id} wait on before they
	// read. Required.
	Tracker *consistency.Tracker
	// ReadModels are the projection names Orders.Get and Orders.List read,
	// so the waits know which checkpoints must reach the client's token.
	// Required.
	ReadModels []string
	// Ops feeds the dashboard's saga and dead-letter panels. Defaults to
	// NoOps{} (none of either).
	Ops Ops
	// Lag feeds the dashboard's lag chart. Defaults to an empty history:
	// the chart says no projection is measured.
	Lag *LagHistory
	// Catalog, when set, is served at GET /read-models (see
	// consistency.Catalog.Handler). Defaults to nil: no such route.
	Catalog *consistency.Catalog
	// AllowedOrigins are the origins ("https://app.example.com") whose
	// pages may call the API and open the live WebSocket from another
	// site; "*" allows any. Responses to them carry CORS headers that
	// expose X-Consistency-Position and X-Consistency-Stale, and their
	// preflights allow the Idempotency-Key header. The operator
	// API under /api/ stays same-origin only. Defaults to none:
	// same-origin only.
	//
	// An entry is an origin exactly as a browser sends it in the Origin
	// header, scheme://host[:port] (http or https, in lower case, without
	// path, trailing slash or default port), compared as a string: New
	// refuses any other form, such as a bare host or a wildcard pattern.
	AllowedOrigins []string
	// MaxBodyBytes caps request bodies; a larger one is answered with 413.
	// Defaults to DefaultMaxBodyBytes (16 KiB).
	MaxBodyBytes int64
	// Logger receives server-side failures. Defaults to slog.Default().
	Logger *slog.Logger
	// Clock is what "now" means for the lag chart's window. Defaults to
	// events.SystemClock.
	Clock events.Clock
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Ops == nil {
		out.Ops = NoOps{}
	}
	if out.Lag == nil {
		out.Lag = newLagHistory(LagHistoryConfig{})
	}
	out.MaxBodyBytes = cmp.Or(out.MaxBodyBytes, DefaultMaxBodyBytes)
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	if out.Clock == nil {
		out.Clock = events.SystemClock{}
	}
	out.ReadModels = slices.Clone(out.ReadModels)
	out.AllowedOrigins = slices.Clone(out.AllowedOrigins)
	return out
}

func (c *Config) validate() error {
	switch {
	case c.Orders == nil:
		return errors.New("web: Config.Orders is nil (pass the order domain, such as the *App of NewApp)")
	case c.Tracker == nil:
		return errors.New("web: Config.Tracker is nil (pass the consistency.Tracker the projections advance)")
	case len(c.ReadModels) == 0 || slices.Contains(c.ReadModels, ""):
		return errors.New("web: Config.ReadModels is empty or holds an empty name (name the projections Orders.Get reads, such as order_summary)")
	case c.MaxBodyBytes < 0:
		return fmt.Errorf("web: Config.MaxBodyBytes is %d: use 0 for the default (%d) or a positive size", c.MaxBodyBytes, DefaultMaxBodyBytes)
	}
	for i, o := range c.AllowedOrigins {
		if o == "" {
			return fmt.Errorf("web: Config.AllowedOrigins[%d] is empty (remove it, or use \"*\" for any origin)", i)
		}
		if o == "*" {
			continue
		}
		if why := originFault(o); why != "" {
			hint := ""
			if fix := suggestOrigin(o); fix != "" {
				hint = fmt.Sprintf(" (write %q)", fix)
			}
			return fmt.Errorf("web: Config.AllowedOrigins[%d] is %q, which %s%s: an entry is an origin as a browser sends it in "+
				"the Origin header, scheme://host[:port] such as \"https://shop.example\" or \"http://localhost:8080\" "+
				"(http or https, in lower case, with no path, trailing slash, query, user, wildcard or default port), or \"*\" for any origin",
				i, o, why, hint)
		}
	}
	return nil
}

// OriginFault says why o is not an entry Config.AllowedOrigins takes (an
// origin as browsers send it, or "*"), and the origin o probably meant
// when one can be guessed; why is "" when o is fine. The CLI checks its
// --allow-origin values with it before it opens anything.
func OriginFault(o string) (why, fix string) {
	switch o {
	case "*":
		return "", ""
	case "":
		return "is empty", ""
	}
	if why = originFault(o); why == "" {
		return "", ""
	}
	return why, suggestOrigin(o)
}

// originFault says why o is not an origin as browsers serialize it in an
// Origin header, or "" when it is one. Origins are compared as exact
// strings (for CORS and the live WebSocket alike), so an entry in any
// other form, which some other software would read as a host pattern or
// normalize, would never match a browser's Origin: refused instead.
func originFault(o string) string {
	u, err := url.Parse(o)
	switch {
	case err != nil:
		return "does not parse as a URL"
	case u.Scheme == "" || !strings.Contains(o, "://") && u.Scheme != "http" && u.Scheme != "https":
		// "localhost:8080" parses with the scheme "localhost".
		return "has no scheme"
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("has the scheme %q", u.Scheme)
	case u.Opaque != "" || u.Host == "":
		return "has no //host"
	case u.User != nil:
		return "has a user"
	case u.Path == "/":
		return "ends in a slash"
	case u.Path != "" || u.RawPath != "":
		return "has a path"
	case u.RawQuery != "" || u.ForceQuery:
		return "has a query"
	case u.Fragment != "" || strings.Contains(o, "#"):
		return "has a fragment"
	}
	host, port := u.Hostname(), u.Port()
	switch {
	case strings.ContainsAny(host, "*?[]\\"):
		return "has a wildcard (list every origin, or use \"*\")"
	case !validHost(u.Host, host):
		return "has no host as browsers write it (a DNS name, or an IP address in its shortest form, IPv6 in brackets)"
	case strings.HasSuffix(u.Host, ":") || port != "" && !validPort(port):
		return "has no valid port (1 to 65535)"
	case port == "80" && u.Scheme == "http" || port == "443" && u.Scheme == "https":
		return "names the default port, which browsers leave out"
	case o != strings.ToLower(o):
		return "is not in lower case"
	case o != u.Scheme+"://"+u.Host:
		return "is not in the form browsers send" // an escape in the host
	}
	return ""
}

// suggestOrigin guesses the origin meant by o, a bad entry: https when it
// names no scheme, lower case, without path, query or default port. ""
// when no guess is an origin.
func suggestOrigin(o string) string {
	if !strings.Contains(o, "://") {
		if strings.Contains(o, "@") {
			return "" // mailto:shop@example names no host
		}
		o = "https://" + o
	}
	u, err := url.Parse(o)
	if err != nil || u.Host == "" {
		return ""
	}
	scheme, host := strings.ToLower(u.Scheme), strings.ToLower(u.Host)
	host = strings.TrimSuffix(host, ":")
	if scheme == "https" {
		host = strings.TrimSuffix(host, ":443")
	} else {
		host = strings.TrimSuffix(host, ":80")
	}
	fix := scheme + "://" + host
	if originFault(fix) != "" {
		return ""
	}
	return fix
}

// validHost accepts, hostport being the URL's host and host its Hostname,
// a DNS name (letters, digits, '-', '.') or an IP address as browsers
// write it: IPv6 in brackets, in the shortest form, without a zone.
func validHost(hostport, host string) bool {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip.String() == host && ip.Zone() == "" && !ip.Is4In6() && ip.Is6() == strings.HasPrefix(hostport, "[")
	}
	return host != "" && !strings.HasPrefix(host, ".") && !strings.Contains(host, "..") && strings.IndexFunc(host, func(r rune) bool {
		return (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '.'
	}) < 0
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p
}
