package consistency

import (
	"encoding/json"
	"net/http"
	"strings"
)

// Problem types this package answers with. They are tag URIs (RFC 4151):
// stable identifiers, not links.
const (
	// ProblemInvalidToken: the consistency token is malformed.
	ProblemInvalidToken = "tag:converge-es.github.io,2026:problem/invalid-consistency-token"
	// ProblemTokenVersion: the token was written by another token format
	// version.
	ProblemTokenVersion = "tag:converge-es.github.io,2026:problem/consistency-token-version"
	// ProblemInvalidTimeout: the X-Consistency-Timeout header is malformed.
	ProblemInvalidTimeout = "tag:converge-es.github.io,2026:problem/invalid-consistency-timeout"
)

// ContentTypeProblem is the media type of RFC 9457 problem details.
const ContentTypeProblem = "application/problem+json"

// maxProblemValue bounds the offending input echoed in a problem, so a
// client cannot make the server reflect a large header back.
const maxProblemValue = 128

// Problem is an RFC 9457 problem details object.
type Problem struct {
	// Type identifies the kind of problem. Defaults to "about:blank".
	Type string `json:"type"`
	// Title is a short summary of the problem type.
	Title string `json:"title"`
	// Status is the HTTP status code.
	Status int `json:"status"`
	// Detail explains this occurrence, and what to do about it.
	Detail string `json:"detail,omitempty"`
	// Instance identifies this occurrence.
	Instance string `json:"instance,omitempty"`
	// Parameter names the header or query parameter at fault (extension
	// member).
	Parameter string `json:"parameter,omitempty"`
	// Value is the offending input, truncated (extension member).
	Value string `json:"value,omitempty"`
}

// WriteProblem answers with a problem details body of type about:blank.
func WriteProblem(w http.ResponseWriter, status int, title, detail string) {
	WriteProblemDetails(w, &Problem{Title: title, Status: status, Detail: detail})
}

// WriteProblemDetails answers with p as application/problem+json.
func WriteProblemDetails(w http.ResponseWriter, p *Problem) {
	out := *p
	if out.Type == "" {
		out.Type = "about:blank"
	}
	if out.Status == 0 {
		out.Status = http.StatusInternalServerError
	}
	if out.Title == "" {
		out.Title = http.StatusText(out.Status)
	}
	out.Value = truncate(out.Value, maxProblemValue)
	body, err := json.Marshal(out)
	if err != nil {
		// Every field is a string or an int: Marshal cannot fail.
		panic("consistency: encode problem: " + err.Error())
	}
	h := w.Header()
	h.Set("Content-Type", ContentTypeProblem)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(out.Status)
	_, _ = w.Write(append(body, '\n'))
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
