package pgstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestMetadataKeysAreReadAsSpelled: stored metadata keys are read as
// PostgreSQL reads them, letter case included. encoding/json matched
// "Correlation_ID" to correlation_id, while the partition filter's SQL
// (metadata->>'correlation_id') did not: an event written around the store
// with such a key fell to one partition in a read split in Go
// (feed.SharedReads, Filter.Match) and to another in a read split in the
// store. Over random spellings, every event a partitioned read returns is
// one Filter.Match puts there, and a key spelled otherwise reads as absent.
func TestMetadataKeysAreReadAsSpelled(t *testing.T) {
	t.Parallel()
	b := setup(t, events.NewRegistry(), 3)
	ctx := context.Background()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	spell := func(key string) (string, bool) {
		if rng.IntN(2) == 0 {
			return key, true
		}
		r := []rune(key)
		for {
			for i := range r {
				if rng.IntN(2) == 0 {
					r[i] = []rune(strings.ToUpper(string(r[i])))[0]
				}
			}
			if s := string(r); s != key {
				return s, false
			}
		}
	}
	want := map[string]events.Metadata{}
	for i := range 40 {
		var m events.Metadata
		doc := map[string]any{}
		if k, exact := spell("correlation_id"); rng.IntN(4) > 0 {
			v := fmt.Sprintf("c%d", rng.IntN(1000))
			doc[k] = v
			if exact {
				m.CorrelationID = v
			}
		}
		// Values and nested keys may spell the keys exactly: only the top
		// level's keys count.
		cause := []string{"cause", "correlation_id", "extra"}[rng.IntN(3)]
		if k, exact := spell("causation_id"); rng.IntN(2) == 0 {
			doc[k] = cause
			if exact {
				m.CausationID = cause
			}
		}
		extra := map[string]string{"tenant": "t"}
		if rng.IntN(2) == 0 {
			extra["correlation_id"] = "nested"
		}
		if k, exact := spell("extra"); rng.IntN(2) == 0 {
			doc[k] = extra
			if exact {
				m.Extra = extra
			}
		}
		meta, err := json.Marshal(doc)
		require.NoError(t, err)
		stream := fmt.Sprintf("x-%d", i)
		_, err = b.db.Pool.Exec(ctx, fmt.Sprintf(`INSERT INTO %q.events (sort_key, event_id, stream_id, version, type, schema_version, payload, metadata, category)
VALUES (pg_current_xact_id()::text::bigint, $1, $2, 1, 'rv.thing', 1, '{}', $3::jsonb, 'x')`, b.db.Schema), uuid.NewString(), stream, string(meta))
		require.NoError(t, err)
		want[stream] = m
	}
	// The feed shows them once no transaction older than theirs is open
	// on the server (other tests' included).
	var all []events.Envelope
	require.Eventually(t, func() bool {
		var err error
		all, err = b.store.ReadAll(ctx, events.Token{}, 0)
		return err == nil && len(all) == len(want)
	}, 30*time.Second, 5*time.Millisecond)
	for _, env := range all {
		require.Equal(t, want[env.StreamID], env.Metadata, "stream %s", env.StreamID)
	}
	seen := map[string]int{}
	for i := range 4 {
		f := feed.Filter{Partition: feed.Partition{Index: i, Count: 4, Key: feed.ByCorrelation}}
		bt, err := b.store.ReadFeed(ctx, events.Token{}, f, 0)
		require.NoError(t, err)
		for _, e := range bt.Events {
			require.True(t, f.Match(e), "partition %d of 4 returned %s (correlation %q)", i, e.StreamID, e.Metadata.CorrelationID)
			seen[e.StreamID]++
		}
	}
	require.Len(t, seen, len(want), "every event falls to a partition")
	for s, n := range seen {
		require.Equal(t, 1, n, "%s falls to one partition", s)
	}
}
