package feed_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/feed/feedtest"
	"github.com/converge-es/converge/events/memstore"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newMemstore is feedtest's constructor for the in-memory store.
func newMemstore(t *testing.T) (events.Store, feed.Source) {
	t.Helper()
	s, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s, s
}

func TestFeedMemstore(t *testing.T) {
	t.Parallel()
	feedtest.Run(t, newMemstore)
}

func TestWatermillUniversalMemstore(t *testing.T) {
	t.Parallel()
	feedtest.RunUniversal(t, newMemstore, feedtest.UniversalFeatures)
}
