package faulttest_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/converge-es/converge/internal/faulttest"
)

func TestMain(m *testing.M) {
	// Worker processes are this binary, re-executed: they run their role
	// and exit here.
	faulttest.Main(map[string]faulttest.Role{
		projectionWorkerRole: projectionWorker,
		sagaWorkerRole:       sagaWorker,
		idleRole:             idle,
	})
	goleak.VerifyTestMain(m,
		// pgxpool's background health check ends shortly after Close.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
	)
}
