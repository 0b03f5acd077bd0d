package feed

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/converge-es/converge/events"
)

// MembersHandleTable holds, per live member of a processor, what it
// handles (ProcessorConfig.Handles), keyed by the processor's name and a
// hash of the member's.
const MembersHandleTable = "member_handles"

// handleAll is what a processor without a type or category filter
// handles: every type and every category.
const handleAll = "feed:all"

// handlesOf is what a processor of c handles: its filter, and what its
// handler declares (ProcessorConfig.Handles), sorted and unique.
func handlesOf(c *ProcessorConfig) []string {
	var out []string
	for _, t := range c.Types {
		out = append(out, "type:"+t)
	}
	for _, cat := range c.Categories {
		out = append(out, "category:"+cat)
	}
	if len(out) == 0 {
		out = append(out, handleAll)
	}
	out = append(out, c.Handles...)
	slices.Sort(out)
	return slices.Compact(out)
}

// covers reports whether a member handling have handles all of want.
func covers(have, want []string) bool {
	all := slices.Contains(have, handleAll)
	for _, w := range want {
		if _, ok := slices.BinarySearch(have, w); ok {
			continue
		}
		if all && (strings.HasPrefix(w, "type:") || strings.HasPrefix(w, "category:")) {
			continue
		}
		return false
	}
	return true
}

// handlesRow is a member's row in MembersHandleTable.
type handlesRow struct {
	Member  string    `json:"member"`
	Handles []string  `json:"handles"`
	At      time.Time `json:"at"`
}

func (m *membership) handlesKey(member string) string {
	sum := sha256.Sum256([]byte(member))
	return m.group + "/" + hex.EncodeToString(sum[:16])
}

// recordHandles writes this member's row, at each heartbeat before the
// heartbeat itself: when the others see the member live, its row is there,
// and a row another member removed as stale (see eligible) comes back.
func (m *membership) recordHandles(ctx context.Context) error {
	b, err := json.Marshal(handlesRow{Member: m.member, Handles: m.handles, At: time.Now().UTC()})
	if err != nil {
		return err
	}
	return m.rows.Put(ctx, RuntimeNamespace, MembersHandleTable, m.handlesKey(m.member), b, events.Token{})
}

// eligible returns the live members that handle everything any live
// member handles, sorted (the partitions are split among them only), and
// whether some live member handles otherwise than this one. While
// two builds of an application run side by side, a member of the older
// build would take events only the newer one handles, and move its
// checkpoint past them for good (filtered out of its reads, or acked by a
// handler that does not know them); it stands by instead until the newer
// members are gone. A live member whose row is missing (its write
// failed, or a process of a release before these rows) makes the read
// fail: what it handles is unknown, and the caller stands by rather than
// guess.
// Rows of members no longer live are removed once older than three TTLs.
func (m *membership) eligible(ctx context.Context, members []string) ([]string, bool, error) {
	live := make(map[string][]string, len(members))
	for _, mem := range members {
		live[mem] = nil
	}
	var union []string
	after := ""
	for {
		page, err := m.rows.List(ctx, RuntimeNamespace, MembersHandleTable, RowQuery{Prefix: m.group + "/", After: after})
		if err != nil {
			return nil, false, fmt.Errorf("feed: read what the members of %q handle: %w", m.group, err)
		}
		for _, row := range page {
			var r handlesRow
			if err := json.Unmarshal(row.Value, &r); err != nil {
				continue // not a row this version wrote: handles nothing
			}
			if _, ok := live[r.Member]; !ok {
				if time.Since(r.At) > 3*m.ttl {
					_ = m.rows.Delete(ctx, RuntimeNamespace, MembersHandleTable, row.Key)
				}
				continue
			}
			slices.Sort(r.Handles)
			live[r.Member] = r.Handles
			union = append(union, r.Handles...)
		}
		if len(page) < DefaultRowLimit {
			break
		}
		after = page[len(page)-1].Key
	}
	slices.Sort(union)
	union = slices.Compact(union)
	for _, mem := range members {
		if live[mem] == nil {
			return nil, false, fmt.Errorf("feed: live member %s of %q has not recorded what it handles", mem, m.group)
		}
	}
	out := []string{} // empty, not nil: nobody (set takes nil for everybody)
	for _, mem := range members {
		if covers(live[mem], union) {
			out = append(out, mem)
		}
	}
	slices.Sort(out)
	mixed := slices.ContainsFunc(members, func(mem string) bool { return !slices.Equal(live[mem], m.handles) })
	return out, mixed, nil
}
