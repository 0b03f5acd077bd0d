package projections

import (
	"sync"

	"github.com/converge-es/converge/events/feed"
)

// maxKnownRows bounds what a rebuild remembers across units. Past it the
// rebuild forgets and reads rows it has not touched in the current unit
// again, so its memory stays flat however many rows the model has.
const maxKnownRows = 100_000

// knownRows is what a rebuild's processor knows of its generation's rows
// across units, while it holds one lease: the rows its committed units
// wrote or read. It is the generation's only writer (strong appends write
// the active generation, and a rebuild is only given one when its
// projection has a single partition), so nothing changes those rows under
// it. When it has held the lease since delivery began at the start of the
// feed, and that delivery skips nothing, it has seen every write the
// generation ever had (the generation began empty), so a row it does not
// know does not exist. A delivery that skips what the partitions of an
// earlier partition count handled (feed.SkipsCarried: the projection's
// Partitions changed while the rebuild was in progress) begins at the
// start of the feed too, but the rows those partitions wrote are there.
type knownRows struct {
	generation int64 // the lease generation it holds for

	mu       sync.Mutex
	rows     map[rowKey]cachedRow
	complete bool
	unit     feed.Unit // the unit whose reads and writes it takes at commit
}

func (k *knownRows) lookup(key rowKey) (cachedRow, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if c, ok := k.rows[key]; ok {
		return c, true
	}
	if k.complete {
		return cachedRow{}, true // never written by this generation
	}
	return cachedRow{}, false
}

// known returns what the rebuild in partition slot knows from its earlier
// units, and arranges for unit u's rows to join it when u commits. It
// returns nil when nothing can be known: a partitioned projection, no
// lease, or a lease newer than the one the knowledge was made under.
// skipsCarried is feed.SkipsCarried of the unit's delivery.
func (a *applier) known(lease feed.Lease, ok, skipsCarried bool, slot int, u feed.Unit, overlay map[rowKey]cachedRow) *knownRows {
	if !ok || a.rebuild == 0 || a.proj.partitions > 1 {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	k := a.knowledge[slot]
	if k == nil || k.generation != lease.Generation {
		// Another owner may have committed in between: start over, and
		// only a delivery that began at the feed's start and skips
		// nothing an earlier partition count handled sees all writes.
		complete := lease.Position.IsZero() && !skipsCarried
		k = &knownRows{generation: lease.Generation, rows: map[rowKey]cachedRow{}, complete: complete}
		if a.knowledge == nil {
			a.knowledge = map[int]*knownRows{}
		}
		a.knowledge[slot] = k
	}
	if k.unit != u {
		k.unit = u
		u.AfterCommit(func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			if a.knowledge[slot] != k {
				return
			}
			k.mu.Lock()
			defer k.mu.Unlock()
			for key, c := range overlay {
				k.rows[key] = c
			}
			if len(k.rows) > maxKnownRows {
				// Forget, and stop claiming completeness: rows dropped
				// from memory may exist.
				k.rows, k.complete = map[rowKey]cachedRow{}, false
			}
		})
	}
	return k
}
