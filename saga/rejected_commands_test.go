package saga_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// TestFixtureCountsOnlyWhatTheSagasSent: a command.Rejected fed to the
// order saga lands on a command stream, but the fixture's ExpectCommands
// and Commands list only the commands the engine sent in answer (its
// compensations, newest first).
func TestFixtureCountsOnlyWhatTheSagasSent(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		fx := newFixture(t, mk, setup{})
		fx.Given(placed("1", 30))
		fx.When(ev("1", StockReserved{OrderID: "1"})).ExpectCommands(ChargePayment{OrderID: "1", Amount: 30})
		charge := fx.Commands()[0]
		fx.When(sagatest.Event{
			Stream:      command.StreamFor(command.RejectedType, "1"),
			Data:        command.Rejected{CommandID: charge.ID, Type: charge.Type, Reason: "card expired"},
			Correlation: "1", Causation: charge.ID,
		})
		fx.ExpectCommands(ReleaseStock{OrderID: "1"}, NotifyCustomer{OrderID: "1", Text: "order cancelled"})
		for _, c := range fx.Commands() {
			require.NotEqual(t, command.RejectedType, c.Type)
		}
		fx.ExpectStatus(orders, "1", saga.StatusFailed)
		require.Contains(t, fx.Instance(orders, "1").Reason, "payment.charge rejected: card expired")
	})
}
