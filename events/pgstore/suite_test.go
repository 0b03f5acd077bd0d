package pgstore_test

import (
	"testing"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/eventstoretest"
	"github.com/converge-es/converge/events/feed"
)

// The same behavioural suites the in-memory store passes.

func TestStoreSuite(t *testing.T) {
	t.Parallel()
	eventstoretest.Run(t, func(t *testing.T) events.Store {
		return setup(t, eventstoretest.Registry(), 6).store
	})
}

func TestFeedSourceSuite(t *testing.T) {
	t.Parallel()
	eventstoretest.RunFeed(t, func(t *testing.T) feed.Source {
		return setup(t, eventstoretest.Registry(), 6).store
	})
}
