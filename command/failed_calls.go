package command

import (
	"reflect"
	"sync"

	"github.com/converge-es/converge/events"
)

// failedCall names a handler call: the delivery's unit of work and the
// command's event id.
type failedCall struct {
	unit events.Unit
	msg  string
}

// maxFailedCalls is how many failed calls a generation of failedCalls
// holds: a retry middleware asks again within one delivery, long before
// that many other calls have failed.
const maxFailedCalls = 1024

// failedCalls remembers the calls that failed, so a retry middleware's
// next call in the same unit runs nothing (feed.ErrUnitFailed). A unit is
// never used again once it ends, so entries only age out: two
// generations, the older dropped when the newer fills.
type failedCalls struct {
	mu        sync.Mutex
	cur, prev map[failedCall]error
}

func (f *failedCalls) get(k failedCall) error {
	if !comparableUnit(k.unit) {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err, ok := f.cur[k]; ok {
		return err
	}
	return f.prev[k]
}

func (f *failedCalls) put(k failedCall, err error) {
	if !comparableUnit(k.unit) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.cur == nil || len(f.cur) >= maxFailedCalls {
		f.prev, f.cur = f.cur, map[failedCall]error{}
	}
	f.cur[k] = err
}

// comparableUnit reports whether u can be a map key: the stores' units are
// pointers, but another Source's might be a value holding a map.
func comparableUnit(u events.Unit) bool {
	return u != nil && reflect.TypeOf(u).Comparable()
}
