package sagatest

import (
	"fmt"
	"slices"
	"strings"

	"github.com/converge-es/converge/saga"
)

// sagaNames returns the names of the saga types defs define, sorted.
func sagaNames(defs []saga.Definition) []string {
	var out []string
	for _, d := range defs {
		if d != nil {
			out = append(out, d.Name())
		}
	}
	slices.Sort(out)
	return out
}

// unknownSaga refuses a saga type that names, sorted, do not hold: a
// misspelt one would list no instance, and a check over "every instance"
// (or "nothing ignored") would hold whatever the run did. where says what
// defines them.
func unknownSaga(names []string, name, where string) error {
	if _, ok := slices.BinarySearch(names, name); ok {
		return nil
	}
	return fmt.Errorf("sagatest: %s defines no saga type %q (its types: %s)", where, name, strings.Join(names, ", "))
}
