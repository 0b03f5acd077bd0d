package eventstoretest_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/eventstoretest"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// TestStore is the package documentation's example, run on the in-memory
// store: the suite checks itself against a store known to pass it.
func TestStore(t *testing.T) {
	t.Parallel()
	newStore := func(t *testing.T) *memstore.Store {
		s, err := memstore.New(&memstore.Config{Registry: eventstoretest.Registry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	eventstoretest.Run(t, func(t *testing.T) events.Store { return newStore(t) })
	eventstoretest.RunFeed(t, func(t *testing.T) feed.Source { return newStore(t) })
}
