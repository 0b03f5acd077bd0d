package projections

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
)

// Tx is a handler's view of its unit of work: the read-model writes of one
// event. They take effect together with the event's checkpoint (the
// projection's processor) or with the append (strong projections applied
// by the append hook), or not at all.
type Tx struct {
	ctx        context.Context
	projection string
	generation int
	token      events.Token
	rows       rowStore
	updates    []Update
}

// Projection returns the name of the projection being applied.
func (tx *Tx) Projection() string { return tx.projection }

// Generation returns the read-model generation being written: the active
// one, or the next one while a rebuild builds it beside the active one.
func (tx *Tx) Generation() int { return tx.generation }

// Table returns the named table of the generation being written. Table
// names are 1 to MaxTableNameLength bytes; an invalid name makes every call
// on the table fail with ErrInvalidKey.
func (tx *Tx) Table(name string) Table {
	return &table{name: name, rows: tx.rows, rec: tx.record, err: validateTable(name)}
}

// Pgx returns the PostgreSQL transaction the handler runs in, for raw SQL
// that must commit with the read model (false in memory). Do not commit or
// roll it back: return an error from the handler to discard its work.
//
// Raw tables are yours to manage. Rebuild writes the next generation
// beside the live one only for Table rows: a raw table that must survive a
// rebuild without downtime has to be keyed by Generation (and cleaned up
// when a generation is dropped); otherwise rebuild it yourself. Reset does
// not touch raw tables either.
func (tx *Tx) Pgx() (pgx.Tx, bool) {
	pg, err := pgstore.TxFromContext(tx.ctx)
	return pg, err == nil && pg != nil
}

func (tx *Tx) record(u Update) {
	u.Projection, u.Generation, u.Token = tx.projection, tx.generation, tx.token
	tx.updates = append(tx.updates, u)
}
