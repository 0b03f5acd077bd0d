package events_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// TestLoadAndUpdateRefuseANilStore: a nil store is taken as "the unit in
// ctx"; with none there, Load and Update say so instead of panicking.
func TestLoadAndUpdateRefuseANilStore(t *testing.T) {
	t.Parallel()
	agg := events.Aggregate[int]{Apply: func(n int, _ any) (int, error) { return n + 1, nil }}
	require.NotPanics(t, func() {
		_, _, err := events.Load(context.Background(), nil, agg, "counter-1")
		require.ErrorContains(t, err, "store is nil")
		_, err = events.Update(context.Background(), nil, agg, "counter-1", nil, func(int) ([]events.Event, error) { return nil, nil })
		require.ErrorContains(t, err, "store is nil")
	})
}
