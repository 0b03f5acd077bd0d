package migrations_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Migrate opens connections and, against a server that answers slowly or
// not at all, waits on them; none may outlive the test that used them.
// Schemas are not reused here: these tests migrate schemas themselves.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
