package pgstore

import (
	"fmt"
	"strings"

	"github.com/converge-es/converge/events/feed"
)

// filterClause turns f into SQL conditions on the events table (each
// starting with " AND "), with parameters numbered from first on. Every
// value travels as a parameter and is compared with = or starts_with, so no
// character of a type or category name is ever a wildcard. The clause has
// one shape per combination of filter parts, so pgx's statement cache keeps
// a handful of statements.
func filterClause(f feed.Filter, first int) (string, []any) {
	var (
		b    strings.Builder
		args []any
	)
	param := func(v any) string {
		args = append(args, v)
		return fmt.Sprintf("$%d", first+len(args)-1)
	}
	if len(f.Types) > 0 {
		fmt.Fprintf(&b, " AND type = ANY(%s::text[])", param(f.Types))
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
		if len(plain) > 0 {
			alts = append(alts, fmt.Sprintf("category = ANY(%s::text[])", param(plain)))
		}
		if len(dashed) > 0 {
			alts = append(alts, fmt.Sprintf(
				"EXISTS (SELECT 1 FROM unnest(%s::text[]) AS c(cat) WHERE stream_id = c.cat OR starts_with(stream_id, c.cat || '-'))", param(dashed)))
		}
		fmt.Fprintf(&b, " AND (%s)", strings.Join(alts, " OR "))
	}
	if f.Partition.Enabled() {
		key := "stream_id"
		if f.Partition.Key == feed.ByCorrelation {
			key = "coalesce(nullif(metadata->>'correlation_id', ''), stream_id)"
		}
		fmt.Fprintf(&b, " AND %s = %s::int", partitionExpr(key, param(f.Partition.Count)), param(f.Partition.Index))
	}
	return b.String(), args
}

// partitionExpr is feed.PartitionOf in SQL: the first four bytes of the
// key's MD5, big-endian, top bit cleared, modulo the count.
func partitionExpr(key, count string) string {
	return fmt.Sprintf("((('x' || substr(md5(%s), 1, 8))::bit(32)::int & 2147483647) %% %s::int)", key, count)
}
