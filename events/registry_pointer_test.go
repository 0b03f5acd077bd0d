package events_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

type pointed struct {
	N int `json:"n"`
}

// TestRegisterRefusesPointerTypes: a pointer type is not registered, alone
// or beside its value type, which NameOf already names through a pointer:
// otherwise one Go type would have two names and decode as a pointer.
func TestRegisterRefusesPointerTypes(t *testing.T) {
	t.Parallel()
	reg := events.NewRegistry()
	require.ErrorContains(t, events.RegisterSafely[*pointed](reg, "pointed.ptr", 1), "is a pointer")
	require.NoError(t, events.RegisterSafely[pointed](reg, "pointed", 1))
	require.ErrorContains(t, events.RegisterSafely[*pointed](reg, "pointed.ptr", 1), "is a pointer")
	name, _, err := reg.NameOf(&pointed{})
	require.NoError(t, err)
	require.Equal(t, "pointed", name, "a pointer to the value type has its name")
}
