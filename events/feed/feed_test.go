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
	goleak.VerifyTestMain(m,
		// A message given up when its subscription ended (Watermill's
		// universal tests leave some unanswered) rolls its unit back once
		// its holder answers, or after LeaseTTL: on a goroutine that can
		// outlive the last test by up to that long.
		goleak.IgnoreTopFunction("github.com/converge-es/converge/events/feed.(*consumer).abandon.func1"),
	)
}

// newMemstore is feedtest's constructor for the in-memory store. The
// suites' in-memory runs are feedtest's own tests (its documentation's
// example); the ones here need two processes.
func newMemstore(t *testing.T) (events.Store, feed.Source) {
	t.Helper()
	s, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s, s
}

// Two processes in memory share the store itself.
func TestFeedProcessesMemstore(t *testing.T) {
	t.Parallel()
	feedtest.RunProcesses(t, func(t *testing.T) (events.Store, feed.Source, feed.Source) {
		t.Helper()
		s, src := newMemstore(t)
		return s, src, src
	})
}
