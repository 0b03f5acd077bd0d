package eventstoretest

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// feedTest is one behaviour every feed.Source must have. Sources are also
// stores: the test appends through s.
type feedTest struct {
	name string
	fn   func(t *testing.T, src feed.Source, s events.Store)
}

var feedTests = []feedTest{
	{"ReadFeedOrderAndLimit", testReadFeedOrderAndLimit},
	{"ReadFeedCategory", testReadFeedCategory},
	{"WakeAfterAppend", testWakeAfterAppend},
	{"AcquireAndPosition", testAcquireAndPosition},
	{"LeaseHeldByOther", testLeaseHeldByOther},
	{"AcquireBySameOwnerFences", testAcquireBySameOwnerFences},
	{"LeaseTakeoverAfterExpiry", testLeaseTakeoverAfterExpiry},
	{"ReleaseLetsOthersIn", testReleaseLetsOthersIn},
	{"ConsumersNameOnlyLiveHolders", testConsumersNameOnlyLiveHolders},
	{"RollbackDiscards", testRollbackDiscards},
	{"ConcurrentAcquire", testConcurrentAcquire},
	{"CheckpointNames", testCheckpointNames},
	{"WatchCheckpoints", testWatchCheckpoints},
	{"ReadFeedTypes", testReadFeedTypes},
	{"ReadFeedCategoriesAreLiteral", testReadFeedCategoriesAreLiteral},
	{"ReadFeedPartitions", testReadFeedPartitions},
	{"ReadFeedFiltersProperty", testReadFeedFiltersProperty},
	{"ReadFeedScannedTo", testReadFeedScannedTo},
	{"ReadFeedFilteredPendingBehindUnit", testReadFeedFilteredPendingBehindUnit},
	{"UnitRollbackDiscardsAppends", testUnitRollbackDiscardsAppends},
	{"UnitCountsWrites", testUnitCountsWrites},
	{"UnitCommitMakesAppendsVisible", testUnitCommitMakesAppendsVisible},
	{"UpdateJoinsTheUnit", testUpdateJoinsTheUnit},
	{"AppenderWaitsForUnit", testAppenderWaitsForUnit},
	{"AppendBesideOpenUnit", testAppendBesideOpenUnit},
	{"DuplicateOfCommittedEventLeavesUnitUsable", testDuplicateLeavesUnitUsable},
	{"DuplicateOfHeldEventFailsTheUnit", testDuplicateOfHeldEventFailsTheUnit},
	{"CommitWithStaleLeaseWritesNothing", testCommitWithStaleLeaseWritesNothing},
	{"CommitSeveralMoves", testCommitSeveralMoves},
	{"CommitFromMovedCheckpointWritesNothing", testCommitFromMovedCheckpointWritesNothing},
	{"AdvanceNeverMovesBack", testAdvanceNeverMovesBack},
	{"HooksRunBeforeTheMoveIsAnnounced", testHooksRunBeforeTheMoveIsAnnounced},
	{"Membership", testMembership},
	{"RowsReadYourWrites", testRowsReadYourWrites},
	{"RowsList", testRowsList},
	{"RowsDeleteNamespace", testRowsDeleteNamespace},
	{"RowsInvalid", testRowsInvalid},
	{"RowsLockedReadNoLostUpdate", testRowsLockedReadNoLostUpdate},
	{"RowsPrefetchNeverAnswersOlder", testRowsPrefetchNeverAnswersOlder},
	{"AppendHooks", testAppendHooks},
	{"DeleteCheckpoints", testDeleteCheckpoints},
	{"AppendHookAfterSkipsStoredRetry", testAppendHookAfterSkipsStoredRetry},
	{"RowsUnitProperty", testRowsUnitProperty},
	{"RowsPutCopiesValue", testRowsPutCopiesValue},
	{"CommitRowsOnlyWithStaleLeaseWritesNothing", testCommitRowsOnlyWithStaleLeaseWritesNothing},
	{"AppendHookFailureKeepsEarlierRowWrites", testAppendHookFailureKeepsEarlierRowWrites},
	{"ClosedSourceRefusesAndEndsSubscriptions", testClosedSourceRefusesAndEndsSubscriptions},
	{"UnitReappendOfItsOwnEvents", testUnitReappendOfItsOwnEvents},
	{"UnitReadStreamNegativeVersion", testUnitReadStreamNegativeVersion},
	{"ReservedMetadataRefused", testReservedMetadataRefused},
	{"UnitsAppendingCrosswiseDoNotWaitForEver", testUnitsAppendingCrosswiseDoNotWaitForEver},
	{"UnitsLockingRowsCrosswiseConflict", testUnitsLockingRowsCrosswiseConflict},
	{"UnitUsableAfterACallFailsOnADoneContext", testUnitUsableAfterACallFailsOnADoneContext},
	{"LeaseArguments", testLeaseArguments},
	{"LeaseTextLength", testLeaseTextLength},
	{"TokensBeyondAStoreAreRefused", testTokensBeyondAStoreAreRefused},
	{"ReadFeedRefusesBadNames", testReadFeedRefusesBadNames},
	{"UnitBadInputBeforeCanceledContext", testUnitBadInputBeforeCanceledContext},
	{"EndedUnitRefusesEveryCall", testEndedUnitRefusesEveryCall},
	{"UnitEmptyReadsAreEmptySlices", testUnitEmptyReadsAreEmptySlices},
	{"CheckpointCallsRefuseBadNames", testCheckpointCallsRefuseBadNames},
	{"CommitRefusesACheckpointMovedTwice", testCommitRefusesACheckpointMovedTwice},
	{"UnmarkedFindsWhatNoHookMarked", testUnmarkedFindsWhatNoHookMarked},
}

// RunFeed runs the feed suite. newSource must return a fresh, empty source
// for each call, built like Run's stores (a registry from Registry()), and
// clean it up with t.Cleanup. The source must also implement events.Store,
// as memstore.Store and pgstore.Store do: the suite appends through it.
// Subtests run in parallel.
func RunFeed(t *testing.T, newSource func(t *testing.T) feed.Source) {
	t.Helper()
	for _, tc := range slices.Concat(feedTests, sharedReadsTests) {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := newSource(t)
			s, ok := src.(events.Store)
			require.True(t, ok, "%T does not implement events.Store: RunFeed appends through the source", src)
			requireSuiteRegistry(t, s.Registry())
			tc.fn(t, src, s)
		})
	}
}

// awaitFeed waits until ReadFeed in category shows at least n events and
// requires that it shows exactly n. It pages with a small limit, so paging
// is exercised too.
func awaitFeed(t *testing.T, src feed.Source, category string, n int) []events.Envelope {
	t.Helper()
	return awaitFiltered(t, src, catFilter(category), n)
}

// catFilter is the filter of one category, or of everything for "".
func catFilter(category string) feed.Filter {
	if category == "" {
		return feed.Filter{}
	}
	return feed.Filter{Categories: []string{category}}
}

// awaitFiltered is awaitFeed for any filter. It pages from ScannedTo when
// a page holds no events, as a consumer does.
func awaitFiltered(t *testing.T, src feed.Source, f feed.Filter, n int) []events.Envelope {
	t.Helper()
	var got []events.Envelope
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		got = nil
		var after events.Token
		for {
			b, err := src.ReadFeed(t.Context(), after, f, 3)
			require.NoError(c, err)
			require.LessOrEqual(c, len(b.Events), 3, "ReadFeed returned more than its limit")
			if len(b.Events) == 0 && !b.ScannedTo.After(after) {
				break
			}
			got = append(got, b.Events...)
			if len(b.Events) > 0 {
				require.False(c, b.ScannedTo.Before(b.Events[len(b.Events)-1].Token), "ScannedTo is at least the last event's token")
			}
			after = b.ScannedTo
		}
		require.GreaterOrEqual(c, len(got), n, "events shown by ReadFeed(%+v)", f)
	}, waitFor, pollEvery)
	require.Len(t, got, n, "ReadFeed(%+v) shows more events than were appended", f)
	return got
}

func testReadFeedOrderAndLimit(t *testing.T, src feed.Source, s events.Store) {
	ctx := t.Context()
	for i, stream := range []string{"a-1", "b-1", "a-1", "c-1", "b-1", "a-2", "c-1"} {
		mustAppend(t, s, stream, events.AnyVersion, placed("o", i))
	}
	all := awaitAll(t, s, 7)
	require.Equal(t, all, awaitFeed(t, src, "", 7), "with no category the feed is the global order")

	b, err := src.ReadFeed(ctx, events.Token{}, feed.Filter{}, 2)
	require.NoError(t, err)
	require.Equal(t, all[:2], b.Events)
	b, err = src.ReadFeed(ctx, all[1].Token, feed.Filter{}, 4)
	require.NoError(t, err)
	require.Equal(t, all[2:6], b.Events, "the feed starts strictly after the token")
	b, err = src.ReadFeed(ctx, all[6].Token, feed.Filter{}, 0)
	require.NoError(t, err)
	require.Empty(t, b.Events)
}

func testReadFeedCategory(t *testing.T, src feed.Source, s events.Store) {
	streams := []string{"order-1", "orders-1", "order", "customer-1", "order-2-x", "xorder-1", "orderX-1", "order-1", "Order-3"}
	for i, stream := range streams {
		mustAppend(t, s, stream, events.AnyVersion, placed("o", i))
	}
	all := awaitAll(t, s, len(streams))

	pick := func(idx ...int) []events.Envelope {
		out := make([]events.Envelope, len(idx))
		for i, j := range idx {
			out[i] = all[j]
		}
		return out
	}
	cases := []struct {
		category string
		want     []events.Envelope
	}{
		{"order", pick(0, 2, 4, 7)},
		{"orders", pick(1)},
		{"order-2", pick(4)},
		{"customer", pick(3)},
		{"Order", pick(8)},
		// Pattern characters are plain characters: no LIKE wildcards.
		{"order_", nil},
		{"ord%", nil},
		{"%", nil},
		{"'; DROP TABLE events; --", nil},
		{"nothing", nil},
	}
	for _, tc := range cases {
		got := awaitFeed(t, src, tc.category, len(tc.want))
		require.Equal(t, ids(tc.want), ids(got), "category %q", tc.category)
	}

	// The limit counts events in the category, not events scanned.
	b, err := src.ReadFeed(t.Context(), events.Token{}, catFilter("order"), 2)
	require.NoError(t, err)
	require.Equal(t, ids(pick(0, 2)), ids(b.Events))
	b, err = src.ReadFeed(t.Context(), all[2].Token, catFilter("order"), 2)
	require.NoError(t, err)
	require.Equal(t, ids(pick(4, 7)), ids(b.Events))
}

func testWakeAfterAppend(t *testing.T, src feed.Source, s events.Store) {
	for i := range 3 {
		wake := src.Wake()
		mustAppend(t, s, "order-1", events.AnyVersion, placed("o", i))
		require.Eventually(t, func() bool {
			select {
			case <-wake:
				return true
			default:
				return false
			}
		}, waitFor, pollEvery, "Wake's channel must close after an append (round %d)", i)
	}
}
