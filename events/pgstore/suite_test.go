package pgstore_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/eventstoretest"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/feed/feedtest"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// The same behavioural suites the in-memory store passes.

func TestStoreSuite(t *testing.T) {
	t.Parallel()
	eventstoretest.Run(t, func(t *testing.T) events.Store {
		t.Helper()
		return setup(t, eventstoretest.Registry(), 6).store
	})
}

func TestLimitsSuite(t *testing.T) {
	t.Parallel()
	eventstoretest.RunLimits(t, func(t *testing.T, lim events.Limits) events.Store {
		t.Helper()
		db := pgtest.New(t, nil)
		st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: eventstoretest.Registry(), Limits: lim})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	})
}

func TestFeedSourceSuite(t *testing.T) {
	t.Parallel()
	eventstoretest.RunFeed(t, func(t *testing.T) feed.Source {
		t.Helper()
		return setup(t, eventstoretest.Registry(), 6).store
	})
}

func newFeedSource(t *testing.T) (events.Store, feed.Source) {
	t.Helper()
	st := setup(t, eventstoretest.Registry(), 6).store
	return st, st
}

// The Subscriber and Publisher behaviour suite, as run against memstore.
func TestFeedSuite(t *testing.T) {
	t.Parallel()
	feedtest.Run(t, newFeedSource)
}

// Two processes are two stores over one schema: what one does reaches the
// other only through PostgreSQL.
func TestFeedProcessesSuite(t *testing.T) {
	t.Parallel()
	feedtest.RunProcesses(t, func(t *testing.T) (events.Store, feed.Source, feed.Source) {
		t.Helper()
		b := setup(t, eventstoretest.Registry(), 6)
		other, err := pgstore.New(t.Context(), b.db.Pool, &pgstore.Config{Schema: b.db.Schema, Registry: eventstoretest.Registry()})
		require.NoError(t, err)
		t.Cleanup(func() { _ = other.Close() })
		for _, st := range []*pgstore.Store{b.store, other} {
			require.Eventually(t, st.PushHealthy, 15*time.Second, 5*time.Millisecond, "a store's listen connection never came up")
		}
		return b.store, b.store, other
	})
}

// Watermill's universal Pub/Sub suite. ForceShort keeps it to about ten
// seconds under -race on two cores (the long form takes over two minutes).
func TestWatermillUniversal(t *testing.T) {
	t.Parallel()
	features := feedtest.UniversalFeatures
	features.ForceShort = true
	feedtest.RunUniversal(t, newFeedSource, features)
}
