package live

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
)

var (
	//go:embed page.html
	pageHTML string
	//go:embed page.js
	pageJS string

	pageTemplate = template.Must(template.New("page").Parse(pageHTML))
)

// PageHandler serves a small, self-contained HTML page that follows one
// entity live: open it with ?entity=order-1 and it connects to the Hub's
// Handler at wsPath, subscribes, and shows the latest row (#data), its
// position (#position), the connection state (#status: "pending…" until
// the subscription is acknowledged, then "connected") and the updates
// received (#log). It makes the consistency window visible: a reader sees
// "pending" until the read model has caught up and pushed the row.
//
// wsPath is a path such as "/live" (on the page's own host); an absolute
// ws://, wss://, http:// or https:// URL (the page connects with ws: for
// http and wss: for https); or a scheme-relative URL such as
// "//live.example.com/live", which the page connects to with wss: when it
// was itself loaded over https and ws: otherwise.
//
// The page loads nothing else and renders everything it receives as text;
// its Content-Security-Policy allows only its own inline script and
// connections to its own origin and, when wsPath names a host, to that
// host with the scheme the page connects with: ws: or wss: as above, both
// for a scheme-relative wsPath. It is a demo and a debugging aid, not a
// UI framework.
//
// PageHandler panics when wsPath is not a valid URL reference.
func PageHandler(wsPath string) http.Handler {
	u, err := url.Parse(wsPath)
	if wsPath == "" || err != nil {
		panic(fmt.Sprintf("live: PageHandler: wsPath %q is not a URL path like \"/live\"", wsPath))
	}
	var buf bytes.Buffer
	err = pageTemplate.Execute(&buf, struct {
		WSPath string
		Script template.JS
	}{wsPath, template.JS(pageJS)}) //nolint:gosec // pageJS is our own embedded file, not input.
	if err != nil {
		panic(fmt.Sprintf("live: PageHandler: rendering the page: %v", err))
	}
	body := buf.Bytes()

	sum := sha256.Sum256([]byte(pageJS))
	// The sources name the scheme page.js connects with: under CSP3 an
	// http: or https: source does not match a ws: or wss: URL, and a
	// bare host is matched as if it had the page's own scheme.
	connect := "'self'"
	if u.Host != "" {
		switch u.Scheme {
		case "":
			connect += " ws://" + u.Host + " wss://" + u.Host
		case "https", "wss":
			connect += " wss://" + u.Host
		default: // http, ws: page.js connects with ws:, as for any other scheme
			connect += " ws://" + u.Host
		}
	}
	csp := "default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-" +
		base64.StdEncoding.EncodeToString(sum[:]) + "'; connect-src " + connect +
		"; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "live: the page supports GET only", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-cache")
		if r.Method == http.MethodGet {
			_, _ = w.Write(body)
		}
	})
}
