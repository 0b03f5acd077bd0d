package feedtest_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/feed/feedtest"
	"github.com/converge-es/converge/events/memstore"
)

// TestMain checks for leaks, as the package documentation asks of the
// suite's callers.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// A message given up when its subscription ended (Watermill's
		// universal tests leave some unanswered) rolls its unit back once
		// its holder answers, or after LeaseTTL: on a goroutine that can
		// outlive the last test by up to that long.
		goleak.IgnoreTopFunction("github.com/converge-es/converge/events/feed.(*consumer).abandon.func1"),
	)
}

// newStoreAndSource is the constructor TestWatermillUniversal passes: a
// fresh in-memory store, closed when the test ends.
func newStoreAndSource(t *testing.T) (events.Store, feed.Source) {
	t.Helper()
	s, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s, s
}

// TestFeed and TestWatermillUniversal are the package documentation's
// example, run on the in-memory store: the suite checks itself against a
// source known to pass it.
func TestFeed(t *testing.T) {
	t.Parallel()
	feedtest.Run(t, func(t *testing.T) (events.Store, feed.Source) {
		s, err := memstore.New(nil)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return s, s
	})
}

func TestWatermillUniversal(t *testing.T) {
	t.Parallel()
	feedtest.RunUniversal(t, newStoreAndSource, feedtest.UniversalFeatures)
}
