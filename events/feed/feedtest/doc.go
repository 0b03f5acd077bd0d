// Package feedtest is the behavioural suite of feed.Subscriber,
// feed.Publisher and feed.Processor over a feed.Source. memstore runs it in
// the feed package's tests; pgstore runs the same suite against PostgreSQL,
// so both sources are held to one contract. Every processor test runs twice,
// with the processor mounted on a router and with it run by Processor.Run,
// since the two deliveries must not differ in anything but the router.
//
//	func TestFeed(t *testing.T) {
//		t.Parallel()
//		feedtest.Run(t, func(t *testing.T) (events.Store, feed.Source) {
//			s, err := memstore.New(nil)
//			require.NoError(t, err)
//			t.Cleanup(func() { _ = s.Close() })
//			return s, s
//		})
//	}
//
//	func TestWatermillUniversal(t *testing.T) {
//		t.Parallel()
//		feedtest.RunUniversal(t, newStoreAndSource, feedtest.UniversalFeatures)
//	}
//
// The constructor must return a fresh, empty store for every call (the
// store and the source are usually the same value) and close it with
// t.Cleanup. Subtests run in parallel and wait on conditions, never on fixed
// sleeps, so they also pass against PostgreSQL, whose feed may lag an append
// while other transactions are open. Run the suite's caller with goleak in
// TestMain: every subscriber the suite starts is closed before its test ends.
package feedtest
