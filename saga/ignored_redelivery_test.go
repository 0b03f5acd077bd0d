package saga_test

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"
)

// TestRedeliveryOfAnIgnoredMessageIsADuplicate: a message for no instance
// is counted as ignored once; its redeliveries are counted as duplicates,
// and it stays one record.
func TestRedeliveryOfAnIgnoredMessageIsADuplicate(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		b := newBare(t, mk)
		ping := b.append(t, "order-7", Ping{OrderID: "7", N: 1})
		for range 3 {
			b.deliver(t, ping)
		}
		m := b.engine.Metrics()
		require.Equal(t, 1.0, testutil.ToFloat64(m.Ignored.WithLabelValues(orders, "no_instance")))
		require.Equal(t, 2.0, testutil.ToFloat64(m.Duplicates.WithLabelValues(orders)))
		tl, err := b.engine.Show(context.Background(), orders, "7")
		require.Error(t, err, "there is no instance")
		require.Len(t, tl.Ignored, 1, "one record")
	})
}
