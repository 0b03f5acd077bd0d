package projections

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events/feed"
)

// Stored is a projection's state as the store holds it: what a tool
// without the projections' definitions (`converge projections status`)
// can know about it.
type Stored struct {
	Name  string
	Class consistency.Class
	// Generation is the active generation, which readers read.
	Generation int
	// Building is the generation a rebuild is writing, 0 when none; its
	// processor is RebuildProcessor(Name, Building).
	Building int
	// Dropping lists old generations whose rows are being deleted.
	Dropping []int
}

// ListStored lists every projection a Runner ever registered in rows, by
// name.
func ListStored(ctx context.Context, rows feed.Rows) ([]Stored, error) {
	var out []Stored
	q := feed.RowQuery{}
	for {
		page, err := rows.List(ctx, feed.RuntimeNamespace, StateTable, q)
		if err != nil {
			return nil, fmt.Errorf("projections: list projections: %w", err)
		}
		for _, row := range page {
			var st state
			if err := json.Unmarshal(row.Value, &st); err != nil {
				return nil, fmt.Errorf("projections: state of %q does not decode: %w", row.Key, err)
			}
			out = append(out, Stored{Name: row.Key, Class: st.Class, Generation: st.Active, Building: st.Building, Dropping: st.Dropping})
		}
		if len(page) < feed.DefaultRowLimit {
			return out, nil
		}
		q.After = page[len(page)-1].Key
	}
}

// RebuildProcessor is the name of the processor (and the checkpoints) of
// the rebuild of projection name into generation gen.
func RebuildProcessor(name string, gen int) string { return rebuildName(name, gen) }
