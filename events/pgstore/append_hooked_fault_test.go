package pgstore_test

import (
	"context"
	"testing"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/faultproxy"
)

// everyAppendHook wants every append, so Append runs in a unit of its own
// (as under a strong projection), and changes nothing.
type everyAppendHook struct{}

func (everyAppendHook) Wants([]string) bool { return true }
func (everyAppendHook) Before(_ context.Context, _ feed.Unit, _ string, evs []events.Event) ([]events.Event, error) {
	return evs, nil
}
func (everyAppendHook) After(context.Context, feed.Unit, []events.Envelope) error { return nil }

// simpleProtocol sends statements as text, so the proxy sees the unit's
// COMMIT in the request that carries it.
func simpleProtocol(c *pgxpool.Config) {
	c.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
}

// TestHookedAppendKeepsAppendsPromises: an append a hook wants runs in a
// unit of its own, and keeps Append's promises all the same: a commit
// whose reply is lost is retried to one success, or reported as an unknown
// outcome with the ids to append again; a request lost on the way is
// retried.
func TestHookedAppendKeepsAppendsPromises(t *testing.T) {
	t.Parallel()

	t.Run("CommitReplyLostRetriedToOneSuccess", func(t *testing.T) {
		t.Parallel()
		b := setupFaults(t, pgstore.AppendRetry{}, simpleProtocol)
		defer b.store.AddAppendHook(everyAppendHook{})()
		stream := "order-" + uuid.NewString()
		fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains("COMMIT")})
		res, err := b.store.Append(t.Context(), stream, events.NoStream, rawEvent(1), rawEvent(2))
		require.NoError(t, err, "Append resolves the lost reply by retrying with the same ids")
		requireFired(t, fired)
		require.False(t, res.AlreadyStored, "this call stored them, in its first attempt")
		requireStream(t, b.direct, stream, 2, res)
	})

	t.Run("CommitReplyLostIsAnUnknownOutcome", func(t *testing.T) {
		t.Parallel()
		b := setupFaults(t, noRetry, simpleProtocol)
		defer b.store.AddAppendHook(everyAppendHook{})()
		stream := "order-" + uuid.NewString()
		evs := []events.Event{rawEvent(1), rawEvent(2)} // ids left to the store
		fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains("COMMIT")})
		_, err := b.store.Append(t.Context(), stream, events.NoStream, evs...)
		requireFired(t, fired)
		require.ErrorIs(t, err, events.ErrOutcomeUnknown)
		require.ErrorIs(t, err, events.ErrUnavailable)
		var unknown *events.OutcomeUnknownError
		require.ErrorAs(t, err, &unknown)
		require.Len(t, unknown.EventIDs, 2)
		for i := range evs {
			evs[i].ID = unknown.EventIDs[i]
		}
		again, err := b.store.Append(t.Context(), stream, events.AnyVersion, evs...)
		require.NoError(t, err)
		require.True(t, again.AlreadyStored, "the lost commit had stored them")
		require.Equal(t, unknown.EventIDs, again.EventIDs)
		requireStream(t, b.direct, stream, 2, again)
	})

	t.Run("RequestLostRetried", func(t *testing.T) {
		t.Parallel()
		b := setupFaults(t, pgstore.AppendRetry{})
		defer b.store.AddAppendHook(everyAppendHook{})()
		stream := "order-" + uuid.NewString()
		fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains(stream), DropRequest: true})
		res, err := b.store.Append(t.Context(), stream, events.AnyVersion, rawEvent(1))
		require.NoError(t, err)
		requireFired(t, fired)
		requireStream(t, b.direct, stream, 1, res)
	})
}

// TestAppendThatLosesTheServerForgetsRememberedHeads: an append that finds
// the database unavailable makes the store forget every head it
// remembered (the server may have restarted and kept less than the store
// saw committed), not just the failing stream's.
func TestAppendThatLosesTheServerForgetsRememberedHeads(t *testing.T) {
	t.Parallel()
	b := setupFaults(t, noRetry)
	// Only a listening store remembers heads.
	store, err := pgstore.New(t.Context(), b.pool, &pgstore.Config{Schema: b.direct.Schema(), AppendRetry: noRetry})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	_, err = store.Append(t.Context(), "remembered-1", events.NoStream, rawEvent(1))
	require.NoError(t, err)
	_, _, ok := pgstore.RememberedHead(store, "remembered-1")
	require.True(t, ok)
	stream := "order-" + uuid.NewString()
	fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains(stream), DropRequest: true})
	_, err = store.Append(t.Context(), stream, events.AnyVersion, rawEvent(1))
	requireFired(t, fired)
	require.ErrorIs(t, err, events.ErrUnavailable)
	_, _, ok = pgstore.RememberedHead(store, "remembered-1")
	require.False(t, ok)
}
