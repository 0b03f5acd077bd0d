package command

import (
	"reflect"

	"github.com/converge-es/converge/events"
)

// failedCall names a handler call: the delivery's unit of work and the
// command's event id.
type failedCall struct {
	unit events.Unit
	msg  string
}

// failedCalls remembers the calls that failed, so a retry middleware's
// next call in the same unit runs nothing (feed.ErrUnitFailed).
type failedCalls struct {
	memo unitMemo[failedCall, error]
}

func (f *failedCalls) get(k failedCall) error {
	if !comparableUnit(k.unit) {
		return nil
	}
	err, _ := f.memo.get(k)
	return err
}

func (f *failedCalls) put(k failedCall, err error) {
	if !comparableUnit(k.unit) {
		return
	}
	f.memo.put(k, err)
}

// comparableUnit reports whether u can be a map key: the stores' units are
// pointers, but another Source's might be a value holding a map.
func comparableUnit(u events.Unit) bool {
	return u != nil && reflect.TypeOf(u).Comparable()
}
