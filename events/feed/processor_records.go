package feed

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// ParsePartitionName is PartitionName's inverse for a processor split
// into partitions: it returns the processor's name, the partition's index
// and the partition count of a checkpoint name "name#index/count" (the
// last "#" starts the suffix, so a processor's name may hold "#"), and
// false for any other name, a processor's own among them.
func ParsePartitionName(checkpoint string) (processor string, index, count int, ok bool) {
	hash := strings.LastIndexByte(checkpoint, '#')
	if hash <= 0 {
		return "", 0, 0, false
	}
	i, n, found := strings.Cut(checkpoint[hash+1:], "/")
	if !found {
		return "", 0, 0, false
	}
	index, err1 := strconv.Atoi(i)
	count, err2 := strconv.Atoi(n)
	if err1 != nil || err2 != nil || count < 2 || count > MaxPartitions || index < 0 || index >= count ||
		strconv.Itoa(index) != i || strconv.Itoa(count) != n {
		return "", 0, 0, false
	}
	return checkpoint[:hash], index, count, true
}

// ProcessorPartitions returns, by processor name, the partition count each
// processor last started with, from the records processors keep in Rows
// (RuntimeNamespace, ProcessorsTable). Tools that list checkpoints use it
// to tell a processor's current partitions (PartitionName with this count)
// from those of an earlier count, and from the checkpoint the processor
// had under its own name before it was split: those stay in the store,
// no longer moving. A processor that has not started since records were
// kept has none; a record that does not decode is left out.
func ProcessorPartitions(ctx context.Context, rows Rows) (map[string]int, error) {
	out := map[string]int{}
	q := RowQuery{Limit: DefaultRowLimit}
	for {
		page, err := rows.List(ctx, RuntimeNamespace, ProcessorsTable, q)
		if err != nil {
			return nil, err
		}
		for _, r := range page {
			var rec processorRecord
			if json.Unmarshal(r.Value, &rec) == nil && rec.Partitions >= 1 {
				out[r.Key] = rec.Partitions
			}
		}
		if len(page) < q.Limit {
			return out, nil
		}
		q.After = page[len(page)-1].Key
	}
}

// ForgetCarriedPositions drops what the processor named name carried over
// its last change of partition count (the old partitions' positions,
// behind which its partitions skip events the old ones had handled). A
// reset of the processor to an earlier position calls it in the reset's
// unit: the events after that position are to be handled again, all of
// them. A processor without a record, or without carried positions, is
// left as it is.
func ForgetCarriedPositions(ctx context.Context, rows Rows, name string) error {
	row, ok, err := rows.Get(ctx, RuntimeNamespace, ProcessorsTable, name, LockUpdate)
	if err != nil || !ok {
		return err
	}
	var rec processorRecord
	if err := json.Unmarshal(row.Value, &rec); err != nil {
		return fmt.Errorf("feed: processor record %s does not decode: %w", name, err)
	}
	if rec.Carried == nil {
		return nil
	}
	rec.Carried = nil
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return rows.Put(ctx, RuntimeNamespace, ProcessorsTable, name, b, row.Token)
}
