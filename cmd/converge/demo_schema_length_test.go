package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDemoChecksItsSchemaNameBeforeConnecting: a --schema that fits
// PostgreSQL's 63-byte identifier limit but not with the suffix the demo
// appends (_demo_ and 8 characters) is refused as a flag mistake before
// anything connects: the URL here is never dialled.
func TestDemoChecksItsSchemaNameBeforeConnecting(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("s", 50)
	_, err := runCLI(t, "demo", "--database-url", unreachable, "--schema", long)
	require.ErrorContains(t, err, `--schema "`+long+`": demo appends "_demo_" and 8 characters to it`)
	require.NotContains(t, err.Error(), "connect to PostgreSQL")
}
