package main

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/pgtest"
)

// mainCmd is converge's main run in a child process with args.
func mainCmd(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0])
	cmd.Env = append(os.Environ(), runMainEnv+"="+strings.Join(args, "\n"))
	return cmd
}

// runMain runs converge's main in a child process and returns what it
// printed on each stream and its exit status.
func runMain(t *testing.T, args ...string) (stdout, stderr string, status int) {
	t.Helper()
	cmd := mainCmd(t, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return out.String(), errOut.String(), exit.ExitCode()
	}
	require.NoError(t, err)
	return out.String(), errOut.String(), 0
}

// TestExitStatuses: the exit statuses the help texts document, and that
// a failing command prints its error once, on standard error, as
// "converge: ERROR" without the usage text.
func TestExitStatuses(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	conn := []string{"--database-url", db.URL, "--schema", db.Schema}
	fails := func(t *testing.T, status int, want string, args ...string) {
		t.Helper()
		_, stderr, got := runMain(t, args...)
		require.Equal(t, status, got, "%v: %s", args, stderr)
		require.True(t, strings.HasPrefix(stderr, "converge: "+want), "%v: %s", args, stderr)
		require.Equal(t, 1, strings.Count(stderr, "\n"), "one line: %s", stderr)
	}

	out, stderr, status := runMain(t, "--version")
	require.Zero(t, status)
	require.Empty(t, stderr)
	require.True(t, strings.HasPrefix(out, "converge "), out)

	fails(t, 1, "unknown flag: --bogus (see `converge migrate --help`)", "migrate", "--bogus")
	fails(t, 1, `--schema: schema "Bad"`, append([]string{"migrate"}, append(conn, "--schema", "Bad")...)...)
	fails(t, 3, `schema "`+db.Schema+`" has `, append([]string{"migrate", "--status"}, conn...)...)
	_, _, status = runMain(t, append([]string{"migrate"}, conn...)...)
	require.Zero(t, status)
	_, _, status = runMain(t, append([]string{"migrate", "--status"}, conn...)...)
	require.Zero(t, status, "nothing pending")
	fails(t, 1, "saga: instance not found", append([]string{"sagas", "show", "nope"}, conn...)...)

	b := setupLag(t)
	fails(t, 3, "lag: projection orders breaches its SLA", append([]string{"lag", "orders=1ns", "--fail-on-breach"}, b.conn...)...)
}

// TestServeStopsOnSIGTERM: serve stops gracefully on SIGTERM (as on
// SIGINT), exiting 0.
func TestServeStopsOnSIGTERM(t *testing.T) {
	t.Parallel()
	cmd := mainCmd(t, "serve", "--listen", "127.0.0.1:0")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
	}
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(line, "listening on 127.0.0.1:"), line)
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "a graceful stop exits 0")
}
