package feed

import (
	"crypto/md5" //nolint:gosec // a partition hash, not a security boundary; PostgreSQL computes the same md5 in SQL
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/converge-es/converge/events"
)

// Filter says which events of the feed a consumer receives. The zero Filter
// passes everything.
type Filter struct {
	// Types keeps events whose stored type name is one of these. List every
	// stored name of a handled type, aliases included
	// (events.Registry.StoredNames). Empty: every type.
	Types []string
	// Categories keeps events whose stream is in one of these categories:
	// the stream id equals the category or starts with category + "-".
	// Empty: every stream.
	Categories []string
	// Partition keeps one partition's share of the events, when its Count
	// is above 1.
	Partition Partition
}

// PartitionKey says what a partitioned consumer hashes to split the feed:
// every event with the same key lands in the same partition, in global
// order.
type PartitionKey string

const (
	// ByStream partitions by stream id: a stream's events stay in order.
	// The default.
	ByStream PartitionKey = "stream"
	// ByCorrelation partitions by the events' correlation id (the stream
	// id for events without one): everything one business process caused
	// stays in order, across streams.
	ByCorrelation PartitionKey = "correlation"
)

// Partition selects partition Index of Count (0 <= Index < Count). Count 0
// or 1 means the whole feed.
type Partition struct {
	Index int
	Count int
	// Key is what is hashed. Defaults to ByStream.
	Key PartitionKey
}

// Validate reports a Filter that cannot be read: a bad partition, or a
// category or type name that is empty (which would otherwise silently match
// nothing, or everything), not valid UTF-8 or holding NUL. Stream ids and
// type names never hold the latter two, and PostgreSQL refuses them as
// query parameters: both stores refuse such a filter with this error, where
// memory alone would match nothing. Its errors wrap events.ErrInvalidEvent.
func (f Filter) Validate() error {
	if err := f.Partition.Validate(); err != nil {
		return fmt.Errorf("%w: %w", events.ErrInvalidEvent, err)
	}
	for _, c := range f.Categories {
		if c == "" {
			return fmt.Errorf("%w: feed: Filter.Categories holds an empty category (leave Categories empty to read every stream)", events.ErrInvalidEvent)
		}
		if fault := filterNameFault(c); fault != "" {
			return fmt.Errorf("%w: feed: Filter.Categories holds %q, which %s (no stream id can be in it: name a category of stream ids)", events.ErrInvalidEvent, c, fault)
		}
	}
	for _, t := range f.Types {
		if t == "" {
			return fmt.Errorf("%w: feed: Filter.Types holds an empty type name (leave Types empty to read every type)", events.ErrInvalidEvent)
		}
		if fault := filterNameFault(t); fault != "" {
			return fmt.Errorf("%w: feed: Filter.Types holds %q, which %s (no stored type name can match it: list stored names, events.Registry.StoredNames)", events.ErrInvalidEvent, t, fault)
		}
	}
	return nil
}

// filterNameFault says what is wrong with a category or type name that no
// stream id or type name can be and PostgreSQL's text cannot hold, or ""
// for a good one.
func filterNameFault(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "is not valid UTF-8"
	case strings.IndexByte(s, 0) >= 0:
		return "holds NUL"
	}
	return ""
}

// Enabled reports whether p splits the feed at all.
func (p Partition) Enabled() bool { return p.Count > 1 }

// Validate reports a Partition that cannot be read.
func (p Partition) Validate() error {
	switch {
	case p.Count < 0:
		return fmt.Errorf("feed: partition count %d is negative", p.Count)
	case p.Count > MaxPartitions:
		return fmt.Errorf("feed: partition count %d is above the limit of %d", p.Count, MaxPartitions)
	case p.Count > 1 && (p.Index < 0 || p.Index >= p.Count):
		return fmt.Errorf("feed: partition index %d is outside 0..%d", p.Index, p.Count-1)
	}
	switch p.Key {
	case "", ByStream, ByCorrelation:
		return nil
	}
	return fmt.Errorf("feed: partition key %q: use feed.ByStream or feed.ByCorrelation", string(p.Key))
}

// MaxPartitions bounds Partition.Count.
const MaxPartitions = 1024

// KeyOf returns the string an event is partitioned by under key.
func KeyOf(key PartitionKey, env events.Envelope) string {
	if key == ByCorrelation && env.Metadata.CorrelationID != "" {
		return env.Metadata.CorrelationID
	}
	return env.StreamID
}

// PartitionOf returns the partition (0..count-1) of a partition key: the
// first four bytes of its MD5 digest, big-endian, with the top bit cleared,
// modulo count. PostgreSQL computes the same value in SQL
// (('x' || substr(md5(key), 1, 8))::bit(32)::int & 2147483647) % count, so
// the store can filter partitions itself.
func PartitionOf(key string, count int) int {
	if count <= 1 {
		return 0
	}
	sum := md5.Sum([]byte(key)) //nolint:gosec // see the import
	return int(binary.BigEndian.Uint32(sum[:4])&0x7fffffff) % count
}

// Match reports whether env passes f. Stores use it to filter in memory.
func (f Filter) Match(env events.Envelope) bool {
	if len(f.Types) > 0 && !contains(f.Types, env.Type) {
		return false
	}
	if len(f.Categories) > 0 {
		in := false
		for _, c := range f.Categories {
			if InCategory(env.StreamID, c) {
				in = true
				break
			}
		}
		if !in {
			return false
		}
	}
	if f.Partition.Enabled() {
		return PartitionOf(KeyOf(f.Partition.Key, env), f.Partition.Count) == f.Partition.Index
	}
	return true
}

// InCategory reports whether streamID belongs to category: it is the
// category itself or starts with category + "-". Plain string comparison,
// so "order" never matches "orders-1" and no character is a wildcard.
func InCategory(streamID, category string) bool {
	rest, ok := strings.CutPrefix(streamID, category)
	return ok && (rest == "" || rest[0] == '-')
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
