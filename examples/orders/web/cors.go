package web

import (
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/converge-es/converge/consistency"
)

// CORS response values.
var (
	corsExpose  = strings.Join([]string{consistency.HeaderPosition, consistency.HeaderStale, "Location", "Retry-After", "Link"}, ", ")
	corsHeaders = strings.Join([]string{"Content-Type", consistency.HeaderPosition, consistency.HeaderTimeout, HeaderIdempotencyKey}, ", ")
)

// opsPrefix starts the paths of the operator API.
const opsPrefix = "/api/"

// corsMaxAge is how long a browser may cache a preflight answer, seconds.
const corsMaxAge = "600"

// cors adds CORS headers for the allowed origins, exposing the consistency
// headers so a page on another site can read its token and the stale flag,
// and answers their preflights. Requests from other origins get no CORS
// headers (the browser then keeps the answer from the page), and their
// preflights a 403.
func (s *Server) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != ""
		// The operator API (retry, cancel, what is stuck) is for the
		// dashboard served here: same-origin only, whatever the allowed
		// origins, so "*" for the order API does not let any site act.
		ops := strings.HasPrefix(r.URL.Path, opsPrefix)
		if origin == "" || ops || !s.originAllowed(origin) {
			if preflight {
				// Allowing the origin would not help under /api/: say so
				// rather than advise it.
				detail := "this server does not take cross-origin requests from " + truncate(origin) + " (add it to the allowed origins)"
				if ops {
					detail = "the operator API under " + opsPrefix + " takes same-origin requests only (from the dashboard served here), whatever the allowed origins: it does not take them from " + truncate(origin)
				}
				writeProblem(w, newProblem(http.StatusForbidden, ProblemForbiddenOrigin, "Origin not allowed", detail))
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Expose-Headers", corsExpose)
		if preflight {
			h.Set("Access-Control-Allow-Methods", "GET, HEAD, POST")
			h.Set("Access-Control-Allow-Headers", corsHeaders)
			h.Set("Access-Control-Max-Age", corsMaxAge)
			w.WriteHeader(http.StatusNoContent)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// originAllowed is the one rule for cross-origin callers, of the API and
// of the live WebSocket alike: origin is listed as is, or "*" is.
func (s *Server) originAllowed(origin string) bool {
	if slices.Contains(s.cfg.AllowedOrigins, origin) {
		return true
	}
	if !slices.Contains(s.cfg.AllowedOrigins, "*") {
		return false
	}
	// The live hub refuses an Origin that is not a URL whatever it is
	// told, so "*" cannot take one for the API either.
	_, err := url.Parse(origin)
	return err == nil
}

// liveOrigin refuses a WebSocket handshake from an origin originAllowed
// refuses, before the live hub sees it: the hub's own check reads its
// list as host patterns, case-insensitively, and would take origins CORS
// refuses. As the hub does, it takes requests without an Origin (not
// from a browser) and pages of the host serving it, whatever their
// scheme (a proxy may have ended TLS in front of it).
func (s *Server) liveOrigin(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && !sameHost(origin, r.Host) && !s.originAllowed(origin) {
			writeProblem(w, newProblem(http.StatusForbidden, ProblemForbiddenOrigin, "Origin not allowed",
				"this server does not take live connections from "+truncate(origin)+" (add it to the allowed origins)"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// sameHost reports whether origin names host, the request's Host.
func sameHost(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && u.Host != "" && strings.EqualFold(u.Host, host)
}

// isJSON reports whether r's body is declared application/json.
func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}
