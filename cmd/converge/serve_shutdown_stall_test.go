package main

import (
	"bufio"
	"bytes"
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
)

// TestServeStopIsBoundedWhenTheDatabaseStalls: `converge serve` on
// PostgreSQL, asked to stop (SIGTERM) while the database does not answer
// (a session holds locks on the rows, events and checkpoints tables),
// stops within --shutdown-timeout rather than for as long as the
// workflow's own timeouts add up to: it logs what had not stopped, says
// so on its last line, and exits 1, as the stop did not complete.
func TestServeStopIsBoundedWhenTheDatabaseStalls(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db := pgtest.New(t, nil)
	cmd := mainCmd(t, "serve", "--listen", "127.0.0.1:0", "--database-url", db.URL, "--schema", db.Schema, "--shutdown-timeout", "2s")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("serve did not say where it listens: %v\n%s", err, stderr.String())
	}
	require.True(t, strings.HasPrefix(line, "listening on 127.0.0.1:"), line)

	// The database stops answering the workflow.
	tx, err := db.Pool.Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	for _, table := range []string{"rows", "events", "checkpoints"} {
		_, err = tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{db.Schema, table}.Sanitize()+" IN ACCESS EXCLUSIVE MODE")
		require.NoError(t, err)
	}

	asked := time.Now()
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err = <-exited:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		err = <-exited
		t.Fatalf("serve --shutdown-timeout 2s still stopping 15s after SIGTERM (killed: %v):\n%s", err, stderr.String())
	}
	took := time.Since(asked)
	require.Less(t, took, 2*time.Second+5*time.Second, "stopped %s after SIGTERM", took)
	require.Error(t, err, "an incomplete stop exits non-zero")
	require.Equal(t, 1, cmd.ProcessState.ExitCode(), stderr.String())
	log := stderr.String()
	require.Contains(t, log, `level=ERROR msg="serve: stop: the order workflow did not stop within --shutdown-timeout`)
	lines := strings.Split(strings.TrimSpace(log), "\n")
	last := lines[len(lines)-1]
	require.True(t, strings.HasPrefix(last, "converge: stop: "), last)
	require.Contains(t, last, "did not stop within --shutdown-timeout 2s")
}
