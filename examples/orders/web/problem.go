package web

import (
	"encoding/json"
	"net/http"

	"github.com/converge-es/converge/consistency"
)

// Problem types the API answers with, besides the consistency package's.
// They are tag URIs (RFC 4151): stable identifiers, not links.
const (
	// ProblemInvalidBody: the body is not JSON of the expected shape.
	ProblemInvalidBody = "tag:converge-es.github.io,2026:problem/invalid-body"
	// ProblemValidation: the body is well-formed but its fields are not
	// acceptable; "errors" lists them.
	ProblemValidation = "tag:converge-es.github.io,2026:problem/validation"
	// ProblemBodyTooLarge: the body is over the server's limit.
	ProblemBodyTooLarge = "tag:converge-es.github.io,2026:problem/body-too-large"
	// ProblemUnsupportedMediaType: the body is not application/json.
	ProblemUnsupportedMediaType = "tag:converge-es.github.io,2026:problem/unsupported-media-type"
	// ProblemInvalidParameter: a path or query parameter, or the
	// Idempotency-Key header, is not acceptable; "parameter" names it.
	ProblemInvalidParameter = "tag:converge-es.github.io,2026:problem/invalid-parameter"
	// ProblemIdempotencyKeyReused: the customer placed another order (other
	// sku, qty or card) with this Idempotency-Key. Nothing was placed: a
	// retry sends the first request's body, a new order a new key.
	ProblemIdempotencyKeyReused = "tag:converge-es.github.io,2026:problem/idempotency-key-reused"
	// ProblemNotFound: there is no such order (or saga instance), as of a
	// read model that has caught up with the client's token.
	ProblemNotFound = "tag:converge-es.github.io,2026:problem/not-found"
	// ProblemNotYetVisible: the read model had not caught up with the
	// client's token when the wait ran out, and the order is not in it
	// yet. Retry with the same token.
	ProblemNotYetVisible = "tag:converge-es.github.io,2026:problem/not-yet-visible"
	// ProblemStale: the read model had not caught up with the client's
	// token when the wait ran out; "order" holds the older state it has.
	// Retry with the same token.
	ProblemStale = "tag:converge-es.github.io,2026:problem/stale"
	// ProblemConflict: the saga instance's state does not allow the action.
	ProblemConflict = "tag:converge-es.github.io,2026:problem/conflict"
	// ProblemForbiddenOrigin: a cross-origin request from an origin not in
	// Config.AllowedOrigins.
	ProblemForbiddenOrigin = "tag:converge-es.github.io,2026:problem/forbidden-origin"
)

// problem is a consistency.Problem with this API's extension members.
type problem struct {
	consistency.Problem
	// Errors lists the invalid fields of a ProblemValidation.
	Errors []FieldError `json:"errors,omitempty"`
	// Order is the stale state of a ProblemStale.
	Order *OrderView `json:"order,omitempty"`
}

// writeProblem answers with p as application/problem+json, with the same
// headers as consistency.WriteProblemDetails.
func writeProblem(w http.ResponseWriter, p *problem) {
	if p.Type == "" {
		p.Type = "about:blank"
	}
	if p.Title == "" {
		p.Title = http.StatusText(p.Status)
	}
	body, err := json.Marshal(p)
	if err != nil {
		// Strings, ints and an OrderView: Marshal cannot fail.
		panic("web: encode problem: " + err.Error())
	}
	h := w.Header()
	h.Set("Content-Type", consistency.ContentTypeProblem)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(p.Status)
	_, _ = w.Write(append(body, '\n'))
}

func newProblem(status int, typ, title, detail string) *problem {
	return &problem{Problem: consistency.Problem{Type: typ, Title: title, Status: status, Detail: detail}}
}

// writeJSON answers 200 (or status) with v as JSON, never cached: every
// answer here reflects a moving read model.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		writeProblem(w, newProblem(http.StatusInternalServerError, "", "", "could not encode the response"))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
