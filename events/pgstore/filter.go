package pgstore

import (
	"fmt"
	"slices"
	"strings"

	"github.com/converge-es/converge/events/feed"
)

// filterClause turns f into SQL conditions on the events table (each
// starting with " AND "), with parameters numbered from first on. Every
// value travels as a parameter and is compared with = or starts_with, so no
// character of a type or category name is ever a wildcard. The clause has
// one shape per combination of filter parts, so pgx's statement cache keeps
// a handful of statements.
//
// The types are not part of the clause: they come back in by, with the
// placeholder of their text[] parameter, for the caller to read each
// type's events through its own index range (see readFeedSQL). Without
// types, plain categories (and no dashed ones) come back the same way.
func filterClause(f feed.Filter, first int) (where string, by indexedBy, args []any) {
	var b strings.Builder
	param := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", first+len(args)-1)
	}
	if len(f.Types) > 0 {
		ts := distinct(f.Types)
		by = indexedBy{column: "type", values: param(ts), one: len(ts) == 1}
	}
	if len(f.Categories) > 0 {
		// A category without "-" is exactly the indexed category column (the
		// stream id up to its first "-"); one with "-" needs the prefix test.
		var plain, dashed []string
		for _, c := range f.Categories {
			if strings.Contains(c, "-") {
				dashed = append(dashed, c)
			} else {
				plain = append(plain, c)
			}
		}
		var alts []string
		if by.column == "" && len(dashed) == 0 {
			cs := distinct(plain)
			by = indexedBy{column: "category", values: param(cs), one: len(cs) == 1}
			plain = nil
		}
		if len(plain) > 0 {
			alts = append(alts, fmt.Sprintf("category = ANY(%s::text[])", param(plain)))
		}
		if len(dashed) > 0 {
			alts = append(alts, fmt.Sprintf(
				"EXISTS (SELECT 1 FROM unnest(%s::text[]) AS c(cat) WHERE stream_id = c.cat OR starts_with(stream_id, c.cat || '-'))", param(dashed)))
		}
		if len(alts) > 0 {
			fmt.Fprintf(&b, " AND (%s)", strings.Join(alts, " OR "))
		}
	}
	if f.Partition.Enabled() {
		key := "stream_id"
		if f.Partition.Key == feed.ByCorrelation {
			key = "coalesce(nullif(metadata->>'correlation_id', ''), stream_id)"
		}
		fmt.Fprintf(&b, " AND %s = %s::int", partitionExpr(key, param(f.Partition.Count)), param(f.Partition.Index))
	}
	return b.String(), by, args
}

// indexedBy names a column with an index on (column, sort_key, seq) and the
// placeholder of the text[] of values a filtered read wants in it. Empty
// when the filter has none.
type indexedBy struct {
	column, values string
	// one is set when values holds a single value: its range is read
	// directly, without the merge.
	one bool
}

// distinct sorts and dedupes: a value listed twice would be read twice.
func distinct(vs []string) []string {
	out := slices.Clone(vs)
	slices.Sort(out)
	return slices.Compact(out)
}

// partitionExpr is feed.PartitionOf in SQL: the first four bytes of the
// key's MD5, big-endian, top bit cleared, modulo the count.
func partitionExpr(key, count string) string {
	return fmt.Sprintf("((('x' || substr(md5(%s), 1, 8))::bit(32)::int & 2147483647) %% %s::int)", key, count)
}
