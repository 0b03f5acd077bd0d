// Package eventstoretest is the behavioural suite every events.Store and
// feed.Source must pass. Both memstore and pgstore run it, which is what
// makes the in-memory store a faithful stand-in for PostgreSQL in tests.
//
// Call Run (and RunFeed for stores that also serve the feed) from a test in
// the store's package, with a constructor that returns a fresh, empty store
// for every subtest. The store must encode with a registry from Registry(),
// because the suite appends and decodes its own event types:
//
//	func TestStore(t *testing.T) {
//		t.Parallel()
//		newStore := func(t *testing.T) *memstore.Store {
//			s, err := memstore.New(&memstore.Config{Registry: eventstoretest.Registry()})
//			require.NoError(t, err)
//			t.Cleanup(func() { _ = s.Close() })
//			return s
//		}
//		eventstoretest.Run(t, func(t *testing.T) events.Store { return newStore(t) })
//		eventstoretest.RunFeed(t, func(t *testing.T) feed.Source { return newStore(t) })
//	}
//
// Construct the store with default events.Limits: the suite checks the
// documented defaults (1 MiB payloads, 1000 events per append).
//
// The suite pins down the contracts the events package documents: the
// bad-input table (every case refused with events.ErrInvalidEvent before
// anything is written, with an error that says what is wrong), idempotent
// retries of appends, and that what is accepted reads back as given
// (RequireStoredAsGiven).
//
// Subtests run in parallel and never sleep for a fixed time: they wait on
// conditions, so the suite also passes against PostgreSQL, whose feed may
// lag a moment behind an append while other transactions are open.
package eventstoretest
