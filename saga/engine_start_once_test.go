package saga_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
)

// TestEngineStartsOnce: a second Start, before or after Stop, is refused
// with an error that says to build a new Engine; the first one's loops
// stop with Stop.
func TestEngineStartsOnce(t *testing.T) {
	t.Parallel()
	store := newStore(t, nil)
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{orderSaga(false)}})
	require.NoError(t, err)
	require.NoError(t, eng.Start(t.Context()))
	require.ErrorContains(t, eng.Start(t.Context()), "already started")
	require.NoError(t, eng.Stop(t.Context()))
	err = eng.Start(t.Context())
	require.ErrorContains(t, err, "NewEngine", "a Start after Stop says how to run again")
	require.NoError(t, eng.Stop(t.Context()), "Stop again is harmless")
}
