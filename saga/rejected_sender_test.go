package saga_test

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

type auditState struct {
	Rejections int `json:"rejections"`
}

// auditSaga is a second saga type beside the order saga, with an instance
// of the same id for every order, that also reacts to command.Rejected by
// correlation id (the pattern a saga that sends commands uses), though it
// sends no command itself.
func auditSaga() *saga.Saga[auditState] {
	s := saga.New[auditState]("order_audit", nil)
	saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[auditState], OrderPlaced) error { return nil })
	saga.On(s, func(_ command.Rejected, env events.Envelope) string { return env.Metadata.CorrelationID },
		func(st *saga.Step[auditState], _ command.Rejected) error {
			st.State().Rejections++
			return nil
		})
	return s
}

// TestRejectionReachesOnlyTheSagaTypeThatSentTheCommand: a rejection
// answers the command's sender. Two saga types with instances of the same
// ids both handle command.Rejected by correlation id; when the order
// saga's charge is rejected (order 3), only the order saga may react, on
// every schedule the simulation draws: duplicates, reordering, crashes,
// timers racing events.
func TestRejectionReachesOnlyTheSagaTypeThatSentTheCommand(t *testing.T) {
	t.Parallel()
	const n = 5
	cfg := orderSim(n, func(v *sagatest.SimView) error {
		if !v.Final {
			return nil
		}
		audits, err := v.Instances("order_audit")
		if err != nil {
			return err
		}
		if len(audits) != n {
			return fmt.Errorf("%d audit instances, want %d", len(audits), n)
		}
		for _, in := range audits {
			var st auditState
			if err := json.Unmarshal(in.State, &st); err != nil {
				return err
			}
			if st.Rejections != 0 {
				return fmt.Errorf("audit %s took %d rejections of the order saga's commands as its own", in.ID, st.Rejections)
			}
		}
		orders, err := v.Instances(orders)
		if err != nil {
			return err
		}
		for _, in := range orders {
			if err := endedConsistently(v, in); err != nil {
				return err
			}
		}
		return nil
	})
	cfg.Seeds = 10
	cfg.Sagas = func(saga.Store) []saga.Definition { return []saga.Definition{orderSaga(true), auditSaga()} }
	sagatest.Simulate(t, cfg)
}
