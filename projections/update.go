package projections

import (
	"encoding/json"

	"github.com/converge-es/converge/events"
)

// UpdateKind says what an Update did.
type UpdateKind string

const (
	// UpdatePut: a row was written; Value holds its JSON.
	UpdatePut UpdateKind = "put"
	// UpdateDelete: a row was deleted; Value is nil.
	UpdateDelete UpdateKind = "delete"
	// UpdateReplaced: the whole read model changed at once (a rebuild
	// switched generations); Table and Key are empty. Reload everything.
	UpdateReplaced UpdateKind = "replaced"
)

// Update reports a committed change to a read model, for live views
// (RunnerConfig.OnUpdate).
type Update struct {
	Kind       UpdateKind
	Projection string
	Generation int
	Table      string
	Key        string
	// Value is the row's new JSON as the handler encoded it; nil on delete.
	Value json.RawMessage
	// Token is the position of the event that caused the change; the read
	// model reflects at least everything up to it.
	Token events.Token
}
