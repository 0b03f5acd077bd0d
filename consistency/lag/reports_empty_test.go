package lag_test

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestReportsTellNoPassFromAnEmptyOne: Reports is nil before the first
// pass, and an empty list after a pass that found nothing to report.
func TestReportsTellNoPassFromAnEmptyOne(t *testing.T) {
	t.Parallel()
	b := setup(t, nil) // every consumer, and there is none
	require.Nil(t, b.mon.Reports(), "before the first pass")
	got, err := b.mon.Check(t.Context())
	require.NoError(t, err)
	require.NotNil(t, got)
	require.Empty(t, got)
	require.NotNil(t, b.mon.Reports(), "after a pass that found nothing")
	require.Empty(t, b.mon.Reports())
}
