package projections_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/projections"
)

// TestStrongAppendInALongUnitComesAfterInTheFeed: a unit that wrote first
// (an append of a type the projection does not handle) makes its strong
// append after another strong append committed. The hook applies them in
// the order they took its lock; on PostgreSQL the feed placed the unit's
// event by its transaction id, before the other: the live row kept the
// unit's value and a rebuild gave the other's. The unit's event is now
// placed after the one applied before it.
func TestStrongAppendInALongUnitComesAfterInTheFeed(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			p := projections.New("strong_order", &projections.Config{Class: consistency.Strong})
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Renamed) error {
				return tx.Table("accounts").Put(ctx, e.Account, Account{Name: e.Name})
			})
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})

			u, err := f.source.Checkpoints().Begin(ctx)
			require.NoError(t, err)
			defer func() { _ = u.Rollback(ctx) }()
			_, err = u.Append(ctx, "noise-1", events.AnyVersion, events.Event{Data: Noise{1}})
			require.NoError(t, err)

			plain := f.append(t, "acct-2", Renamed{"a", "plain"})
			res, err := u.Append(ctx, "acct-1", events.AnyVersion, events.Event{Data: Renamed{"a", "unit"}})
			require.NoError(t, err)
			require.NoError(t, u.Commit(ctx))
			require.True(t, res.Token.After(plain.Token), "the unit's event, applied after the plain append, comes after it in the feed: %s, %s", res.Token, plain.Token)
			stored, err := f.store.ReadStream(ctx, "acct-1", 1, 0)
			require.NoError(t, err)
			require.Equal(t, res.Token, stored[0].Token, "as stored")

			f.waitFor(t, res.Token, "strong_order")
			live, _ := account(t, r, "strong_order", "a")
			require.Equal(t, "unit", live.Name)
			require.NoError(t, r.Rebuild(ctx, "strong_order"))
			rebuilt, _ := account(t, r, "strong_order", "a")
			require.Equal(t, live.Name, rebuilt.Name, "the live row equals a recomputation")
		})
	}
}
