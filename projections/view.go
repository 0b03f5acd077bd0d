package projections

// View reads a projection's read model: always the active generation, so
// readers are never shown a generation a rebuild is still writing, and a
// switch moves every reader from the old rows to the new ones at once.
//
// Reads are not fenced by consistency tokens: wait with a
// consistency.Tracker (or consistency.Read) for the projection's name
// first when the read must reflect a given write.
type View struct {
	name string
	rows rowStore
	err  error
}

// Name returns the projection's name.
func (v *View) Name() string { return v.name }

// Table returns a read-only table of the active generation. Writes through
// it fail with ErrReadOnly.
func (v *View) Table(name string) Reader {
	err := v.err
	if err == nil {
		err = validateTable(name)
	}
	return &table{name: name, rows: v.rows, readOnly: true, err: err}
}
