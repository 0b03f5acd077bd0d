package pgstore

import (
	"context"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

var _ feed.HookedSource = (*Store)(nil)

// AddAppendHook installs h on every later append, through the store or its
// units, until remove is called. AppendTx does not run hooks: its
// transaction belongs to the caller, not to a unit a hook could write
// through.
func (s *Store) AddAppendHook(h feed.AppendHook) (remove func()) { return s.hooks.Add(h) }

// appendInOwnUnit runs an append that hooks want in a unit that commits at
// once.
func (s *Store) appendInOwnUnit(ctx context.Context, streamID string, expected events.ExpectedVersion, evs []events.Event) (events.AppendResult, error) {
	u := s.newUnit()
	res, err := u.Append(ctx, streamID, expected, evs...)
	if err != nil {
		_ = u.Rollback(ctx)
		return events.AppendResult{}, err
	}
	if err := u.Commit(ctx); err != nil {
		return events.AppendResult{}, err
	}
	return res, nil
}
