package bench_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/converge-es/converge/internal/pgtest"
)

// A scenario starts routers, processors, listeners and pools; an
// interrupted or failed one must still stop all of them. One goroutine
// is the feed's by design: a subscription that ended under a handler
// holding a message (an interrupt) waits, up to LeaseTTL, for the
// handler's answer before rolling its unit back (feed's consumer.abandon).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.Cleanup(pgtest.ReuseSchemas()),
		goleak.IgnoreAnyFunction("github.com/converge-es/converge/events/feed.(*consumer).abandon.func1"))
}
