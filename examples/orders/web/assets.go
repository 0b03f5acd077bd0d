package web

import (
	"embed"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
)

// assets are the page and the dashboard: plain HTML, CSS and JavaScript,
// embedded so the binary serves them with no build step.
//
//go:embed assets
var assets embed.FS

// csp lets the pages load only their own scripts and styles and talk only
// to their own origin (the API and the WebSocket).
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func securityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

// pageHandler serves one embedded HTML file. It panics when the file is
// missing: the embed is fixed at build time.
func pageHandler(name string) http.Handler {
	body, err := assets.ReadFile("assets/" + name)
	if err != nil {
		panic("web: missing embedded page " + name + ": " + err.Error())
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		securityHeaders(h)
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method != http.MethodHead {
			_, _ = w.Write(body)
		}
	})
}

// assetHandler serves the embedded scripts and styles under /assets/,
// without directory listings. What is not there is answered here, as
// problem details: the file server's own 404 is plain text.
func assetHandler() http.Handler {
	files := http.FileServerFS(assets)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if fi, err := fs.Stat(assets, strings.TrimPrefix(r.URL.Path, "/")); err != nil || fi.IsDir() {
			writeProblem(w, newProblem(http.StatusNotFound, ProblemNotFound, "No such resource",
				"no asset is served at "+truncate(r.URL.Path)+" (the pages at / and /dashboard load theirs)"))
			return
		}
		securityHeaders(w.Header())
		files.ServeHTTP(w, r)
	})
}
