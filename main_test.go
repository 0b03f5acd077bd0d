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
	)
}
