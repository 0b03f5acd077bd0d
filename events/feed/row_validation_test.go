package feed_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// containsNUL reports whether a decoded JSON value holds a NUL in any
// string or object key.
func containsNUL(v any) bool {
	switch x := v.(type) {
	case string:
		return strings.ContainsRune(x, 0)
	case []any:
		for _, e := range x {
			if containsNUL(e) {
				return true
			}
		}
	case map[string]any:
		for k, e := range x {
			if strings.ContainsRune(k, 0) || containsNUL(e) {
				return true
			}
		}
	}
	return false
}

// FuzzValidateRowValue checks the promise both stores rely on: a value is
// accepted exactly when it is JSON of bounded size that PostgreSQL's jsonb
// can store, which refuses only a NUL in a string.
func FuzzValidateRowValue(f *testing.F) {
	for _, seed := range []string{`{}`, `"a"`, `"\u0000"`, `"\\u0000"`, `{"\u0000":1}`, `["x\\\u0000"]`, `"\\\\u0000"`, `1 2`, `{`, ``, `null`} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		err := feed.ValidateRowValue(v)
		var decoded any
		if len(v) == 0 || !json.Valid(v) || json.Unmarshal(v, &decoded) != nil {
			require.ErrorIs(t, err, feed.ErrInvalidRow)
			return
		}
		if len(v) > events.DefaultMaxPayloadBytes || containsNUL(decoded) {
			require.ErrorIs(t, err, feed.ErrInvalidRow)
			return
		}
		require.NoError(t, err)
	})
}

func TestFilterValidateAndMatch(t *testing.T) {
	t.Parallel()
	env := events.Envelope{StreamID: "order-1", Type: "order_placed", Metadata: events.Metadata{CorrelationID: "c-1"}}
	require.True(t, feed.Filter{}.Match(env), "the zero filter passes everything")
	require.True(t, feed.Filter{Types: []string{"x", "order_placed"}, Categories: []string{"order"}}.Match(env))
	require.False(t, feed.Filter{Categories: []string{"order_"}}.Match(env), "no wildcards")
	require.False(t, feed.Filter{Categories: []string{"orde"}}.Match(env))

	p := feed.PartitionOf("c-1", 4)
	require.True(t, feed.Filter{Partition: feed.Partition{Index: p, Count: 4, Key: feed.ByCorrelation}}.Match(env))
	require.False(t, feed.Filter{Partition: feed.Partition{Index: (p + 1) % 4, Count: 4, Key: feed.ByCorrelation}}.Match(env))

	for name, f := range map[string]feed.Filter{
		"empty category": {Categories: []string{""}},
		"empty type":     {Types: []string{""}},
		"NUL category":   {Categories: []string{"order\x00"}},
		"UTF-8 category": {Categories: []string{"\xff"}},
		"UTF-8 type":     {Types: []string{"t\xff"}},
		"index too big":  {Partition: feed.Partition{Index: 2, Count: 2}},
		"negative count": {Partition: feed.Partition{Count: -1}},
		"too many":       {Partition: feed.Partition{Count: feed.MaxPartitions + 1}},
		"unknown key":    {Partition: feed.Partition{Count: 2, Key: "tenant"}},
	} {
		require.ErrorIs(t, f.Validate(), events.ErrInvalidEvent, name)
	}
	require.NoError(t, feed.Filter{Partition: feed.Partition{Index: 1, Count: 2, Key: feed.ByStream}}.Validate())
}

func ExamplePartitionOf() {
	// Four consumers, each reading Filter{Partition: {Index: i, Count: 4}},
	// together see every event once; all of a stream's events go to one of
	// them, in order. PostgreSQL computes the same partitions in SQL.
	for _, stream := range []string{"order-1", "order-3", "order-4"} {
		fmt.Println(stream, "is in partition", feed.PartitionOf(stream, 4))
	}
	// Output:
	// order-1 is in partition 1
	// order-3 is in partition 3
	// order-4 is in partition 0
}
