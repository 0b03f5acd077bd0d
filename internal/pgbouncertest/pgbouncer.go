package pgbouncertest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/converge-es/converge/internal/pgtest"
)

// DebianPath is where Debian's pgbouncer package puts the binary; it is
// used when pgbouncer is not on PATH (/usr/sbin often is not for other
// users than root).
const DebianPath = "/usr/sbin/pgbouncer"

// Config tunes the pooler.
type Config struct {
	// PoolSize is PgBouncer's default_pool_size: how many server sessions
	// all the clients share. Defaults to 3.
	PoolSize int
	// RoundRobin sets server_round_robin: each transaction takes the idle
	// server session that waited longest, so that one client's
	// consecutive transactions move between sessions even when it is the
	// only client. PgBouncer's default hands back the session used last.
	RoundRobin bool
}

// Bouncer is a running PgBouncer in front of a throw-away database.
type Bouncer struct {
	// URL connects to the database through PgBouncer, without TLS. It has a
	// query string, so more parameters can be appended with "&".
	URL string
	// DirectURL connects to the same database without PgBouncer: DATABASE_URL
	// with the database name replaced.
	DirectURL string
	// Database is the throw-away database's name.
	Database string
}

// Start creates a database with a random name (dropped, with any session
// left on it, when the test ends) and starts PgBouncer in pool_mode
// transaction in front of it, on a free port of 127.0.0.1; PgBouncer is
// stopped when the test ends, before the database is dropped and after the
// test's own clean-ups (register those after calling Start). Clients
// authenticate with auth_type trust; PgBouncer logs in to the server as
// DATABASE_URL's user, with its password if it has one.
func Start(tb testing.TB, cfg *Config) *Bouncer {
	tb.Helper()
	c := Config{}
	if cfg != nil {
		c = *cfg
	}
	if c.PoolSize == 0 {
		c.PoolSize = 3
	}
	bin := binary(tb)
	base := pgtest.URL(tb)
	server, err := pgconn.ParseConfig(base)
	if err != nil {
		tb.Fatalf("pgbouncertest: parse DATABASE_URL: %v", err)
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		tb.Fatalf("pgbouncertest: DATABASE_URL must be a postgres:// URL (got %q)", base)
	}
	name := "pgbouncertest_" + randomHex(6)
	createDatabase(tb, base, name)
	direct := *u
	direct.Path = "/" + name
	b := &Bouncer{DirectURL: direct.String(), Database: name}

	dir := tb.TempDir()
	logPath := filepath.Join(dir, "pgbouncer.log")
	// A port that was free a moment ago may be taken by the time PgBouncer
	// binds it: a few tries.
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("pgbouncertest: find a free port: %v", err)
		}
		ini := filepath.Join(dir, "pgbouncer.ini")
		if err := writeConfig(dir, ini, port, name, server, c); err != nil {
			tb.Fatalf("pgbouncertest: write the configuration: %v", err)
		}
		stop, err := run(bin, ini, logPath, port)
		if err != nil {
			lastErr = err
			continue
		}
		tb.Cleanup(func() {
			if tb.Failed() {
				logTail(tb, logPath)
			}
			if err := stop(); err != nil {
				tb.Errorf("pgbouncertest: stop pgbouncer: %v", err)
			}
		})
		b.URL = fmt.Sprintf("postgres://%s@127.0.0.1:%d/%s?sslmode=disable", url.PathEscape(server.User), port, name)
		return b
	}
	logTail(tb, logPath)
	tb.Fatalf("pgbouncertest: start %s: %v", bin, lastErr)
	return nil
}

// binary returns the pgbouncer binary's path or fails the test saying what
// to install.
func binary(tb testing.TB) string {
	tb.Helper()
	if p, err := exec.LookPath("pgbouncer"); err == nil {
		return p
	}
	if _, err := os.Stat(DebianPath); err != nil {
		tb.Fatalf("this test needs PgBouncer, neither on PATH nor at %s (%v): run ./scripts/test, which installs "+
			"Debian's pgbouncer package when it is missing, or apt-get install pgbouncer", DebianPath, err)
	}
	return DebianPath
}

// createDatabase creates database name and drops it when the test ends.
func createDatabase(tb testing.TB, base, name string) {
	tb.Helper()
	execSQL := func(sql string) error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			return err
		}
		defer func() { _ = conn.Close(ctx) }()
		_, err = conn.Exec(ctx, sql)
		return err
	}
	id := pgx.Identifier{name}.Sanitize()
	if err := execSQL("CREATE DATABASE " + id); err != nil {
		tb.Fatalf("pgbouncertest: create database %s: %v", name, err)
	}
	tb.Cleanup(func() {
		// FORCE ends the sessions left on it (PostgreSQL 13, converge's
		// oldest): PgBouncer's, should it not have stopped.
		if err := execSQL("DROP DATABASE IF EXISTS " + id + " WITH (FORCE)"); err != nil {
			tb.Errorf("pgbouncertest: drop database %s: %v", name, err)
		}
	})
}

func writeConfig(dir, ini string, port int, name string, server *pgconn.Config, c Config) error {
	target := fmt.Sprintf("host=%s port=%d dbname=%s user=%s", quote(server.Host), server.Port, quote(name), quote(server.User))
	if server.Password != "" {
		target += " password=" + quote(server.Password)
	}
	roundRobin := 0
	if c.RoundRobin {
		roundRobin = 1
	}
	users := filepath.Join(dir, "userlist.txt")
	// auth_type trust still wants the user listed.
	if err := os.WriteFile(users, []byte(strconv.Quote(server.User)+` ""`+"\n"), 0o600); err != nil {
		return err
	}
	conf := fmt.Sprintf(`[databases]
%s = %s

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = trust
auth_file = %s
pool_mode = transaction
default_pool_size = %d
max_client_conn = 200
server_round_robin = %d
ignore_startup_parameters = extra_float_digits
`, name, target, port, users, c.PoolSize, roundRobin)
	return os.WriteFile(ini, []byte(conf), 0o600)
}

// quote quotes a value of a libpq-style connection string.
func quote(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// run starts PgBouncer and waits until it accepts connections. stop ends it
// (SIGTERM: an immediate shutdown) and waits for it.
func run(bin, ini, logPath string, port int) (stop func() error, err error) {
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	defer func() { _ = logFile.Close() }() // the child keeps its copy
	args := []string{ini}
	if os.Geteuid() == 0 {
		// PgBouncer refuses to run as root; it reads the configuration
		// (in a directory only root may read) before switching.
		args = []string{"-u", "nobody", ini}
	}
	// Not tied to a context: stop ends it, at the test's clean-up.
	cmd := exec.CommandContext(context.Background(), bin, args...)
	// Files, not pipes: no goroutine copies the output.
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	// exited is closed once the process has exited and waitErr is set.
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	stop = func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return nil
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("did not exit within 10s of SIGTERM; killed")
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-exited:
			return nil, fmt.Errorf("pgbouncer exited at start-up: %w", waitErr)
		default:
		}
		dialer := net.Dialer{Timeout: time.Second}
		if conn, err := dialer.DialContext(context.Background(), "tcp", addr); err == nil {
			_ = conn.Close()
			return stop, nil
		}
		if time.Now().After(deadline) {
			_ = stop()
			return nil, fmt.Errorf("pgbouncer did not listen on %s within 15s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort() (int, error) {
	var lc net.ListenConfig
	l, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer func() { _ = l.Close() }()
	addr, ok := l.Addr().(*net.TCPAddr)
	if !ok {
		return 0, fmt.Errorf("listening on %v, not a TCP address", l.Addr())
	}
	return addr.Port, nil
}

// logTail logs the end of PgBouncer's log, for a test that failed.
func logTail(tb testing.TB, logPath string) {
	tb.Helper()
	b, err := os.ReadFile(logPath)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	lines = lines[max(0, len(lines)-40):]
	tb.Logf("pgbouncertest: the end of pgbouncer's log:\n%s", strings.Join(lines, "\n"))
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
