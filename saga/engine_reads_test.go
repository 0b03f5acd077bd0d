package saga_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/saga"
)

// TestEngineReadsListsEveryDeclaredModel: Engine.Reads lists the models
// of every handler kind (event, timeout) of every definition, once each,
// sorted; a handler that declares none adds nothing.
func TestEngineReadsListsEveryDeclaredModel(t *testing.T) {
	t.Parallel()
	a := saga.New[orderState]("reads_a", nil)
	saga.StartOn(a, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil }, saga.Reads("stock", "credit"))
	saga.On(a, byOrder[Ping], func(*saga.Step[orderState], Ping) error { return nil })
	saga.OnTimeout(a, "payment", func(*saga.Step[orderState], saga.Timeout) error { return nil }, saga.Reads("payments"))
	b := saga.New[orderState]("reads_b", nil)
	saga.StartOn(b, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil }, saga.Reads("credit"))
	tracker, err := consistency.NewTracker(&consistency.TrackerConfig{})
	require.NoError(t, err)
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: newStore(t, nil), Sagas: []saga.Definition{a, b}, Tracker: tracker})
	require.NoError(t, err)
	require.Equal(t, []string{"credit", "payments", "stock"}, eng.Reads())

	c := saga.New[orderState]("reads_none", nil)
	saga.StartOn(c, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
	none, err := saga.NewEngine(&saga.EngineConfig{Store: newStore(t, nil), Sagas: []saga.Definition{c}})
	require.NoError(t, err)
	require.Empty(t, none.Reads())
}
