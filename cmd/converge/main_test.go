package main

import (
	"os"
	"strings"
	"testing"

	"go.uber.org/goleak"

	"github.com/converge-es/converge/internal/pgtest"
)

// runMainEnv, when set, makes the test binary run converge's main with
// the arguments it holds (one a line), so tests see the real process:
// exit status, standard output and error, signals.
const runMainEnv = "CONVERGE_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(runMainEnv); ok {
		os.Args = append([]string{"converge"}, strings.Split(args, "\n")...)
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m,
		// Tests hand their schemas on instead of migrating one each.
		goleak.Cleanup(pgtest.ReuseSchemas()),
		// pgxpool's health check goroutine ends just after Close returns.
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
	)
}
