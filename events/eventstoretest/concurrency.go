package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

const (
	concurrentWriters   = 8
	appendsPerWriter    = 50
	maxConflictAttempts = 10_000
)

// appendExactly appends ev with Exactly(current version), reloading the
// version and retrying on conflict, as an aggregate update would.
func appendExactly(ctx context.Context, s events.Store, streamID string, ev events.Event) (events.AppendResult, error) {
	for range maxConflictAttempts {
		v, err := s.StreamVersion(ctx, streamID)
		if err != nil {
			return events.AppendResult{}, err
		}
		res, err := s.Append(ctx, streamID, events.Exactly(v), ev)
		if errors.Is(err, events.ErrWrongExpectedVersion) {
			continue
		}
		return res, err
	}
	return events.AppendResult{}, fmt.Errorf("still conflicting after %d attempts", maxConflictAttempts)
}

// testConcurrentWriters has half the writers append to one stream with
// AnyVersion and the other half to another with Exactly and retries, then
// checks that nothing was lost, duplicated or reordered.
func testConcurrentWriters(t *testing.T, s events.Store) {
	ctx := t.Context()
	const anyStream, exactStream = "counter-any", "counter-exact"
	results := make([][]events.AppendResult, concurrentWriters)
	errs := make([]error, concurrentWriters)
	var wg sync.WaitGroup
	for w := range concurrentWriters {
		wg.Go(func() {
			for n := range appendsPerWriter {
				ev := events.Event{ID: newID(), Data: counterBumped{Writer: w, N: n}}
				var (
					res events.AppendResult
					err error
				)
				if w%2 == 0 {
					res, err = s.Append(ctx, anyStream, events.AnyVersion, ev)
				} else {
					res, err = appendExactly(ctx, s, exactStream, ev)
				}
				if err != nil {
					errs[w] = fmt.Errorf("writer %d, append %d: %w", w, n, err)
					return
				}
				results[w] = append(results[w], res)
			}
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))

	const total = concurrentWriters * appendsPerWriter
	all := awaitAll(t, s, total)
	requireOrdered(t, all)

	byID := make(map[string]events.Envelope, total)
	for _, env := range all {
		_, dup := byID[env.ID]
		require.False(t, dup, "event %s appears twice in ReadAll", env.ID)
		byID[env.ID] = env
	}
	lastVersions := map[string]map[int64]bool{anyStream: {}, exactStream: {}}
	for w, rs := range results {
		require.Len(t, rs, appendsPerWriter, "writer %d", w)
		for _, res := range rs {
			require.Len(t, res.EventIDs, 1)
			env, ok := byID[res.EventIDs[0]]
			require.True(t, ok, "appended event %s is missing from ReadAll", res.EventIDs[0])
			require.Equal(t, res.StreamID, env.StreamID)
			require.Equal(t, res.LastVersion, env.Version)
			require.Equal(t, res.Token, env.Token, "AppendResult.Token is the event's token")
			require.Equal(t, []events.Token{env.Token}, res.Tokens)
			require.False(t, lastVersions[res.StreamID][res.LastVersion], "two appends got version %d of %q", res.LastVersion, res.StreamID)
			lastVersions[res.StreamID][res.LastVersion] = true
		}
	}

	reg := s.Registry()
	for _, stream := range []string{anyStream, exactStream} {
		got, err := s.ReadStream(ctx, stream, 1, 0)
		require.NoError(t, err)
		require.Len(t, got, total/2, "stream %q", stream)
		version, err := s.StreamVersion(ctx, stream)
		require.NoError(t, err)
		require.Equal(t, int64(total/2), version)

		var inAll []events.Envelope
		for _, env := range all {
			if env.StreamID == stream {
				inAll = append(inAll, env)
			}
		}
		require.Equal(t, got, inAll, "the global order agrees with the order of %q", stream)

		next := map[int]int{} // each writer's events appear in the order it wrote them
		for i, env := range got {
			require.Equal(t, int64(i+1), env.Version, "versions of %q are contiguous", stream)
			ev, err := events.DecodeAs[counterBumped](reg, env)
			require.NoError(t, err)
			require.Equal(t, next[ev.Writer], ev.N, "writer %d's events in %q", ev.Writer, stream)
			next[ev.Writer]++
		}
	}
}
