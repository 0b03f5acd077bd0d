package main

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestDemoRunsInMemory(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "demo")
	require.NoError(t, err, out)
	require.Contains(t, out, "status paid; fresh")
	require.Contains(t, out, "STALE (1 events behind")
	require.Contains(t, out, "| `order_summary` | eventual | 2s |")
}
