package projections

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
)

// Appender is the runner's store as an events.Store. Strong projections
// are applied by an append hook the Runner installs on the store
// (feed.HookedSource) at Start: every append through the store, through
// an Appender or through a unit of work of the store applies them in the
// append's own unit, so a read right after the append sees them, and a
// strong handler's error fails the append (nothing is stored). The
// Appender adds nothing to that; it stays for code written against it.
//
// Token waits on a strong projection still follow its processor's
// checkpoint, which passes the events the hook applied without applying
// them again: a token is reported reached only once everything before it
// is applied too, including events appended without the hook (by a
// process that does not run the projections, or before it started).
type Appender struct {
	events.Store
	r *Runner
}

var _ events.Store = (*Appender)(nil)

// ErrAppendTxWithStrong is returned by Appender.AppendTx for events a
// strong projection handles: the caller's transaction is not a unit of
// work the append hook can write through.
var ErrAppendTxWithStrong = errors.New("projections: AppendTx cannot apply strong projections inside a transaction you own; append through a unit of work instead (Source.Checkpoints().Begin, Unit.Append, Unit.Commit), which runs the append hook and commits with your other writes")

// AppendTx appends inside the caller's PostgreSQL transaction
// (pgstore.Store.AppendTx). Events a strong projection handles are
// refused with ErrAppendTxWithStrong: append those through a unit. In
// memory it fails with ErrNoTransactions.
func (a *Appender) AppendTx(ctx context.Context, tx pgx.Tx, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	pg, ok := a.r.cfg.Source.(*pgstore.Store)
	if !ok {
		return events.AppendResult{}, ErrNoTransactions
	}
	if len(a.r.strong) > 0 {
		h := &strongHook{r: a.r, projs: a.r.strong}
		types := make([]string, 0, len(evs))
		for _, ev := range evs {
			if raw, ok := ev.Data.(events.Raw); ok {
				types = append(types, raw.Type)
			} else if name, _, err := pg.Registry().NameOf(ev.Data); err == nil {
				types = append(types, name)
			}
		}
		if h.Wants(types) {
			return events.AppendResult{}, fmt.Errorf("%w (stream %q)", ErrAppendTxWithStrong, streamID)
		}
	}
	return pg.AppendTx(ctx, tx, streamID, expected, evs...)
}
