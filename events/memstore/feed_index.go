package memstore

import (
	"slices"
	"sort"
	"strings"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// feedIndex lists the seqs of the committed events by type and by category
// root, each list in seq order, as PostgreSQL indexes (type, ...) and
// (category, ...): a read filtered by types or categories visits only
// their events instead of every event of the log. It holds seqs, not log
// positions, because a unit that commits after newer events inserts its
// events in the middle of the log and moves every position after them.
// The log never loses an event, so the lists only grow. Guarded by the
// store's mu.
type feedIndex struct {
	byType     map[string][]uint64
	byCategory map[string][]uint64
}

func newFeedIndex() feedIndex {
	return feedIndex{byType: map[string][]uint64{}, byCategory: map[string][]uint64{}}
}

// add lists a committed event.
func (x *feedIndex) add(env events.Envelope) {
	seq := env.Token.Major()
	x.byType[env.Type] = insertSeq(x.byType[env.Type], seq)
	root := categoryRoot(env.StreamID)
	x.byCategory[root] = insertSeq(x.byCategory[root], seq)
}

// insertSeq adds seq in order: at the end, unless a unit committed after
// newer events.
func insertSeq(list []uint64, seq uint64) []uint64 {
	if n := len(list); n == 0 || list[n-1] < seq {
		return append(list, seq)
	}
	i, _ := slices.BinarySearch(list, seq)
	return slices.Insert(list, i, seq)
}

// categoryRoot is a stream id up to its first "-" (pgstore's category
// column). Every stream of a category, dashed or not, has the category's
// root, so the root's list holds all of a category's events.
func categoryRoot(id string) string {
	root, _, _ := strings.Cut(id, "-")
	return root
}

// candidates returns the seqs after `after` of every event f may match:
// those of its types, or of its categories' roots, whichever are fewer.
// It returns false when f names neither, so every event may match.
func (x *feedIndex) candidates(f feed.Filter, after events.Token) (*merge, bool) {
	if len(f.Types) == 0 && len(f.Categories) == 0 {
		return nil, false
	}
	var best *merge
	if len(f.Types) > 0 {
		best = x.from(x.byType, f.Types, after)
	}
	if len(f.Categories) > 0 {
		roots := make([]string, len(f.Categories))
		for i, c := range f.Categories {
			roots[i] = categoryRoot(c)
		}
		if m := x.from(x.byCategory, roots, after); best == nil || m.remaining < best.remaining {
			best = m
		}
	}
	return best, true
}

// from merges the lists of keys, each from its first seq after `after`. A
// key listed twice is merged once: an event has one type and one root, so
// the lists are disjoint and no event comes twice.
func (x *feedIndex) from(lists map[string][]uint64, keys []string, after events.Token) *merge {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	m := &merge{}
	for _, k := range slices.Compact(keys) {
		l := lists[k]
		l = l[sort.Search(len(l), func(i int) bool { return seqToken(l[i]).After(after) }):]
		if len(l) > 0 {
			m.lists = append(m.lists, l)
			m.remaining += len(l)
		}
	}
	return m
}

// merge walks disjoint seq lists together in seq order. Filters name a
// handful of types or categories, so the smallest head is found by a scan.
type merge struct {
	lists     [][]uint64
	remaining int
}

// readable counts the seqs left that a read held back at bound (when
// held) can return.
func (m *merge) readable(bound events.Token, held bool) int {
	if !held {
		return m.remaining
	}
	n := 0
	for _, l := range m.lists {
		n += sort.Search(len(l), func(i int) bool { return !seqToken(l[i]).Before(bound) })
	}
	return n
}

// peek returns the next seq, false when the lists are exhausted.
func (m *merge) peek() (seq uint64, ok bool) {
	_, seq, ok = m.head()
	return seq, ok
}

// next returns the next seq and moves past it.
func (m *merge) next() (seq uint64, ok bool) {
	i, seq, ok := m.head()
	if !ok {
		return 0, false
	}
	if m.lists[i] = m.lists[i][1:]; len(m.lists[i]) == 0 {
		m.lists = slices.Delete(m.lists, i, i+1)
	}
	m.remaining--
	return seq, true
}

func (m *merge) head() (i int, seq uint64, ok bool) {
	for j, l := range m.lists {
		if !ok || l[0] < seq {
			i, seq, ok = j, l[0], true
		}
	}
	return i, seq, ok
}

// seqToken is the token of the event with seq.
func seqToken(seq uint64) events.Token { return events.MakeToken(seq, seq) }
