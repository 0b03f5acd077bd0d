package sagatest

import (
	"fmt"

	"github.com/converge-es/converge/saga"
)

// unknownModels refuses definitions whose handlers read a model the test
// did not give (field names the setting): their steps would park for
// good, and an expectation that nothing is sent would pass on a step
// that never ran.
func unknownModels(eng *saga.Engine, models map[string]Model, field string) error {
	for _, name := range eng.Reads() {
		if _, ok := models[name]; !ok {
			return fmt.Errorf("sagatest: a handler declares saga.Reads(%q), which is not in %s: add it there (a nil Model only tracks the position), or fix the name", name, field)
		}
	}
	return nil
}
