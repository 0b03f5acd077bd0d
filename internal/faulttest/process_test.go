package faulttest_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/faulttest"
)

const idleRole = "idle"

// idle says it runs, and runs until it is told to stop.
func idle(ctx context.Context, w *faulttest.Worker) error {
	w.Report("running", "")
	<-ctx.Done()
	return nil
}

// TestStopRightAfterStart stops processes the moment they start, as the
// chaos's last restart can leave the test doing: the SIGTERM often lands
// before the process catches it, while it is still starting, and that is a
// clean stop, not a failed exit. Stopped later, the Role ends gracefully.
func TestStopRightAfterStart(t *testing.T) {
	t.Parallel()
	running := make(chan struct{}, 16)
	p := faulttest.StartProcess(t, &faulttest.ProcessConfig{Role: idleRole, OnReport: func(faulttest.Report) {
		running <- struct{}{}
	}})
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for range 10 {
		require.NoError(t, p.Stop(ctx))
		require.NoError(t, p.Start())
	}
	require.NoError(t, p.Stop(ctx))
	for len(running) > 0 {
		<-running
	}

	require.NoError(t, p.Start())
	select {
	case <-running:
	case <-ctx.Done():
		t.Fatal("the idle role never reported running")
	}
	require.NoError(t, p.Stop(ctx), "a running Role ends gracefully")
}
