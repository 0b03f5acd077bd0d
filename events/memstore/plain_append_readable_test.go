package memstore_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// TestPlainAppendIsReadableAtOnceUnlessAnEarlierUnitIsOpen guards the
// package doc's "a plain append outside a unit is readable the moment it
// returns unless a unit that appended before it is still open (its
// reservation holds readers back until it ends)". Readable at once: with
// no unit open, with a unit open that has not appended, and with a unit
// that appended only after it. Held back: behind a unit that appended
// before it, as Batch.Pending says, until that unit commits or rolls back.
func TestPlainAppendIsReadableAtOnceUnlessAnEarlierUnitIsOpen(t *testing.T) {
	t.Parallel()
	raw := events.Event{Data: events.Raw{Type: "t", Payload: json.RawMessage(`{}`)}}
	// readable reports whether id is among what ReadAll and ReadFeed
	// return from the start, and whether the feed read says events are
	// pending.
	readable := func(t *testing.T, s *memstore.Store, id string) (bool, bool) {
		t.Helper()
		ctx := t.Context()
		all, err := s.ReadAll(ctx, events.Token{}, 100)
		require.NoError(t, err)
		inAll := false
		for _, e := range all {
			inAll = inAll || e.ID == id
		}
		b, err := s.ReadFeed(ctx, events.Token{}, feed.Filter{}, 100)
		require.NoError(t, err)
		inFeed := false
		for _, e := range b.Events {
			inFeed = inFeed || e.ID == id
		}
		require.Equal(t, inAll, inFeed, "ReadAll and ReadFeed agree")
		return inAll, b.Pending
	}

	t.Run("no unit open", func(t *testing.T) {
		t.Parallel()
		s, _ := setup(t)
		res, err := s.Append(t.Context(), "plain-1", events.NoStream, raw)
		require.NoError(t, err)
		ok, _ := readable(t, s, res.EventIDs[0])
		require.True(t, ok, "readable the moment it returns")
	})

	t.Run("a unit open that has not appended", func(t *testing.T) {
		t.Parallel()
		s, _ := setup(t)
		ctx := t.Context()
		u, err := s.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = u.Rollback(ctx) }()
		res, err := s.Append(ctx, "plain-1", events.NoStream, raw)
		require.NoError(t, err)
		ok, _ := readable(t, s, res.EventIDs[0])
		require.True(t, ok, "a unit holds readers back only once it has reserved a token")
	})

	t.Run("a unit that appended after it", func(t *testing.T) {
		t.Parallel()
		s, _ := setup(t)
		ctx := t.Context()
		res, err := s.Append(ctx, "plain-1", events.NoStream, raw)
		require.NoError(t, err)
		u, err := s.Checkpoints().Begin(ctx)
		require.NoError(t, err)
		defer func() { _ = u.Rollback(ctx) }()
		_, err = u.Append(ctx, "held-1", events.NoStream, raw)
		require.NoError(t, err)
		ok, _ := readable(t, s, res.EventIDs[0])
		require.True(t, ok, "a later reservation holds back only what follows it")
	})

	for _, commit := range []bool{true, false} {
		name := "behind a unit that appended before it, until it rolls back"
		if commit {
			name = "behind a unit that appended before it, until it commits"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s, _ := setup(t)
			ctx := t.Context()
			u, err := s.Checkpoints().Begin(ctx)
			require.NoError(t, err)
			_, err = u.Append(ctx, "held-1", events.NoStream, raw)
			require.NoError(t, err)
			res, err := s.Append(ctx, "plain-1", events.NoStream, raw)
			require.NoError(t, err, "the plain append commits")
			ok, pending := readable(t, s, res.EventIDs[0])
			require.False(t, ok, "held back by the open unit's reservation")
			require.True(t, pending, "the feed read says an event waits behind the reservation")
			if commit {
				require.NoError(t, u.Commit(ctx))
			} else {
				require.NoError(t, u.Rollback(ctx))
			}
			ok, pending = readable(t, s, res.EventIDs[0])
			require.True(t, ok, "readable once the unit has ended")
			require.False(t, pending)
		})
	}
}
