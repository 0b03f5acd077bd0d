package bench_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/converge-es/converge/internal/pgtest"
)

// A scenario starts routers, processors, listeners and pools; an
// interrupted or failed one must still stop all of them.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(pgtest.ReuseSchemas()))
}
