package consistency

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/converge-es/converge/events"
)

// Catalog is where an application declares its read models and their
// consistency class, so API consumers know which reads need a token. It
// serves them as JSON (Handler) and as a Markdown table for the docs
// (MarkdownTable). The zero value is ready to use; it is safe for
// concurrent use.
type Catalog struct {
	mu     sync.RWMutex
	models map[string]ReadModel
}

// Register declares m. It panics on an invalid or duplicate declaration,
// which is a programmer error; use RegisterSafely to get the error instead.
func (c *Catalog) Register(m ReadModel) {
	if err := c.RegisterSafely(m); err != nil {
		panic(err)
	}
}

// RegisterSafely declares m, or says what is wrong with it.
func (c *Catalog) RegisterSafely(m ReadModel) error {
	if err := m.validate(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, dup := c.models[m.Name]; dup {
		return fmt.Errorf("consistency: read model %q is declared twice (each name once)", m.Name)
	}
	if c.models == nil {
		c.models = make(map[string]ReadModel)
	}
	c.models[m.Name] = m
	return nil
}

// ReadModels returns the declared read models sorted by name.
func (c *Catalog) ReadModels() []ReadModel {
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]ReadModel, 0, len(c.models))
	for _, m := range c.models {
		out = append(out, m)
	}
	slices.SortFunc(out, func(a, b ReadModel) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// MarkdownTable renders the read models as the Markdown table the README
// shows, sorted by name, so the docs can be generated rather than kept in
// step by hand.
func (c *Catalog) MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| Read model | Consistency | SLA | Description |\n")
	b.WriteString("|---|---|---|---|\n")
	for _, m := range c.ReadModels() {
		sla := "—"
		if m.SLA > 0 {
			sla = m.SLA.String()
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s |\n", mdCell(m.Name), m.Class, sla, mdCell(m.Description))
	}
	return b.String()
}

// mdCell keeps text from breaking out of its table cell.
func mdCell(s string) string {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ", "|", `\|`, "`", "'").Replace(s)
	return strings.TrimSpace(s)
}

// readModelJSON is one entry of the catalog endpoint.
type readModelJSON struct {
	Name        string        `json:"name"`
	Class       Class         `json:"class"`
	Description string        `json:"description,omitempty"`
	SLA         string        `json:"sla,omitempty"`
	SLAMillis   int64         `json:"sla_ms,omitempty"`
	Checkpoint  *events.Token `json:"checkpoint,omitempty"`
}

// catalogJSON is the body of the catalog endpoint.
type catalogJSON struct {
	ReadModels []readModelJSON `json:"read_models"`
}

// Handler serves the catalog as JSON for GET and HEAD:
//
//	{"read_models": [{"name": "order_summary", "class": "eventual",
//	  "description": "...", "sla": "2s", "sla_ms": 2000,
//	  "checkpoint": "v2.----------3---------9V"}]}
//
// sla_ms is the SLA in whole milliseconds, rounded up. checkpoint is what tr knows of an eventual read model, and is absent when
// tr is nil or has not learned it yet. The response is not cacheable:
// checkpoints move.
func (c *Catalog) Handler(tr *Tracker) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			WriteProblem(w, http.StatusMethodNotAllowed, "", "the read model catalog is read-only: use GET")
			return
		}
		body := catalogJSON{ReadModels: []readModelJSON{}}
		for _, m := range c.ReadModels() {
			e := readModelJSON{Name: m.Name, Class: m.Class, Description: m.Description}
			if m.SLA > 0 {
				// Rounded up: a sub-millisecond SLA is not 0 (which the
				// field leaves out, as if there were none). Not by adding
				// a millisecond less a nanosecond first: that overflows
				// for the longest Durations.
				e.SLA, e.SLAMillis = m.SLA.String(), m.SLA.Milliseconds()
				if m.SLA%time.Millisecond != 0 {
					e.SLAMillis++
				}
			}
			if tr != nil && m.Class == Eventual {
				if pos, ok := tr.Position(m.Name); ok {
					e.Checkpoint = &pos
				}
			}
			body.ReadModels = append(body.ReadModels, e)
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		if r.Method == http.MethodHead {
			return
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(body)
	})
}
