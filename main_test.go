package converge_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/converge-es/converge/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// Tests hand their schemas on instead of migrating one each.
		goleak.Cleanup(pgtest.ReuseSchemas()),
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
		// A Watermill router whose Run failed in a Subscribe (a start
		// cut short: client_slow_start_test.go) waits for ever for the
		// handler that never started; nothing outside Watermill can end
		// that watch. A router's own handlers, which would leak with it
		// if it were never closed, are still looked for.
		goleak.IgnoreAnyFunction("github.com/ThreeDotsLabs/watermill/message.(*Router).watchAllHandlersStopped.func1"),
	)
}
