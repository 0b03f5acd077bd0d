package pgstore_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestAppendTxRefusesReservedMetadata: AppendTx, which runs no append
// hook, refuses the applied-marks key like every other append: stored, it
// would make the projections it names skip the event.
func TestAppendTxRefusesReservedMetadata(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	ctx := t.Context()
	st := openStore(t, db)
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	ev := events.Event{
		Data:     events.Raw{Type: "OrderPlaced", Payload: []byte(`{}`)},
		Metadata: events.Metadata{Extra: map[string]string{events.AppliedMarksKey: "orders"}},
	}
	_, err = st.AppendTx(ctx, tx, "order-1", events.AnyVersion, ev)
	require.ErrorIs(t, err, events.ErrInvalidEvent)
	require.ErrorContains(t, err, events.AppliedMarksKey)
	require.NoError(t, tx.Commit(ctx), "refused before any statement: the transaction is intact")
	v, err := st.StreamVersion(ctx, "order-1")
	require.NoError(t, err)
	require.Zero(t, v)
}
