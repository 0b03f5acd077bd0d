package web

import (
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/converge-es/converge/consistency"
)

// CORS response values.
var (
	corsExpose  = strings.Join([]string{consistency.HeaderPosition, consistency.HeaderStale, "Location", "Retry-After", "Link"}, ", ")
	corsHeaders = strings.Join([]string{"Content-Type", consistency.HeaderPosition, consistency.HeaderTimeout}, ", ")
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
		if origin == "" || !s.originAllowed(origin) || strings.HasPrefix(r.URL.Path, opsPrefix) {
			if preflight {
				p := newProblem(http.StatusForbidden, ProblemForbiddenOrigin, "Origin not allowed",
					"this server does not take cross-origin requests from "+truncate(origin)+" (add it to the allowed origins)")
				writeProblem(w, p)
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

func (s *Server) originAllowed(origin string) bool {
	return slices.Contains(s.cfg.AllowedOrigins, "*") || slices.Contains(s.cfg.AllowedOrigins, origin)
}

// isJSON reports whether r's body is declared application/json.
func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}
