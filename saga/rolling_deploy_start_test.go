package saga_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// TestRollingDeployOnBecomesStartOnIsNotSkipped: the newer build makes
// PaymentCharged start the shipping saga as well (saga.On becomes
// saga.StartOn). The older build would ignore a PaymentCharged for an
// order with no instance yet, which the newer build starts: Handles names
// start handlers apart, so the older build stands by.
func TestRollingDeployOnBecomesStartOnIsNotSkipped(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store := newStore(t, nil)

	older := saga.New[orderState]("shipping", nil)
	saga.StartOn(older, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
	saga.On(older, byOrder[PaymentCharged], func(*saga.Step[orderState], PaymentCharged) error { return nil })

	newer := saga.New[orderState]("shipping", nil)
	saga.StartOn(newer, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
	saga.StartOn(newer, byOrder[PaymentCharged], func(*saga.Step[orderState], PaymentCharged) error { return nil })

	a := buildProcess(t, store, "a-old", older)
	defer a.stop(t)
	b := buildProcess(t, store, "b-new", newer)
	defer b.stop(t)
	takenOver(t, a, b)

	_, err := store.Append(ctx, "payment-7", events.NoStream, events.Event{Data: PaymentCharged{OrderID: "7"}})
	require.NoError(t, err)
	waitStatus(t, b.eng, "shipping", "7", saga.StatusRunning, 10*time.Second)
}
