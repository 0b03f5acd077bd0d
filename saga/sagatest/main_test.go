package sagatest_test

import (
	"testing"

	"go.uber.org/goleak"
)

// The fixture and the simulator start routers, processors and timers of
// their own; none may outlive the test that used them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
