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
// Handler at wsPath (a path such as "/live", or an absolute ws:// or
// wss:// URL), subscribes, and shows the latest row (#data), its position
// (#position), the connection state (#status: "pending…" until the
// subscription is acknowledged, then "connected") and the updates received
// (#log). It makes the consistency window visible: a reader sees "pending"
// until the read model has caught up and pushed the row.
//
// The page loads nothing else and renders everything it receives as text;
// its Content-Security-Policy allows only its own inline script and
// connections to its own origin (or to wsPath's, when absolute). It is a
// demo and a debugging aid, not a UI framework.
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
	connect := "'self'"
	switch {
	case u.Host != "" && u.Scheme != "":
		connect += " " + u.Scheme + "://" + u.Host
	case u.Host != "":
		connect += " " + u.Host
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
