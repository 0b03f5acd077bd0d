package faulttest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// ShutdownMode is how PostgreSQL is stopped (pg_ctl stop -m).
type ShutdownMode string

const (
	// ShutdownFast rolls back open transactions, disconnects every client
	// and shuts down cleanly.
	ShutdownFast ShutdownMode = "fast"
	// ShutdownImmediate kills every server process at once, like a power
	// cut of the database alone: the next start runs crash recovery.
	ShutdownImmediate ShutdownMode = "immediate"
)

// PGBinEnv names the environment variable that points at the directory
// holding initdb and pg_ctl, when they are not in the usual places.
const PGBinEnv = "CONVERGE_PG_BIN"

// ClusterConfig configures StartCluster.
type ClusterConfig struct {
	// BinDir holds initdb and pg_ctl. Defaults to $CONVERGE_PG_BIN, else
	// the newest /usr/lib/postgresql/*/bin (Debian), else the directory of
	// initdb on PATH.
	BinDir string
	// Settings are extra postgresql.conf lines ("name = value"), after the
	// harness's own (port, listen_addresses, fsync = off, ...). Defaults to
	// none.
	Settings []string
	// StartTimeout bounds each start, including crash recovery. Defaults
	// to 60s.
	StartTimeout time.Duration
}

// Cluster is a throw-away PostgreSQL cluster: its own data directory in a
// temporary directory, its own free port on 127.0.0.1, trust
// authentication for the superuser "postgres". It never touches another
// server. It is stopped (immediate mode) and deleted when the test ends.
//
// initdb refuses to run as root, so when the test runs as root (CI does)
// every PostgreSQL command runs as the operating-system user "postgres",
// which owns the temporary directory.
type Cluster struct {
	t       testing.TB
	cfg     ClusterConfig
	dir     string // owned by the server's user
	data    string
	port    int
	cred    *syscall.Credential // nil: run as the current user
	mu      sync.Mutex
	running bool
}

// StartCluster creates, configures and starts a cluster, or fails the test
// with what to install or set.
func StartCluster(tb testing.TB, cfg *ClusterConfig) *Cluster {
	tb.Helper()
	c := &Cluster{t: tb}
	if cfg != nil {
		c.cfg = *cfg
	}
	if c.cfg.StartTimeout == 0 {
		c.cfg.StartTimeout = 60 * time.Second
	}
	bin, err := findBinDir(c.cfg.BinDir)
	if err != nil {
		tb.Fatal(err)
	}
	c.cfg.BinDir = bin

	//nolint:usetesting // tb.TempDir's parents are private to root; the postgres user must reach this one.
	dir, err := os.MkdirTemp("", "converge-faulttest-pg-")
	if err != nil {
		tb.Fatalf("faulttest: temp dir: %v", err)
	}
	c.dir, c.data = dir, filepath.Join(dir, "data")
	tb.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		cred, err := postgresUser()
		if err != nil {
			tb.Fatal(err)
		}
		c.cred = cred
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			tb.Fatalf("faulttest: chown %s to the postgres user: %v", dir, err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*c.cfg.StartTimeout)
	defer cancel()
	if out, err := c.run(ctx, "initdb", "-D", c.data, "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8", "--locale=C"); err != nil {
		tb.Fatalf("faulttest: initdb: %v\n%s", err, out)
	}
	tb.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Stop(sctx, ShutdownImmediate)
	})
	// A free port can be taken between choosing and binding it; try again.
	for attempt := 1; ; attempt++ {
		if err := c.configure(); err != nil {
			tb.Fatal(err)
		}
		err := c.Start(ctx)
		if err == nil {
			return c
		}
		if attempt == 3 {
			tb.Fatalf("faulttest: start PostgreSQL: %v", err)
		}
	}
}

// findBinDir locates initdb and pg_ctl.
func findBinDir(dir string) (string, error) {
	dir = cmpOr(dir, os.Getenv(PGBinEnv))
	if dir == "" {
		found, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
		slices.SortFunc(found, func(a, b string) int { return pgMajor(b) - pgMajor(a) })
		if len(found) > 0 {
			dir = filepath.Dir(found[0])
		} else if p, err := exec.LookPath("initdb"); err == nil {
			dir = filepath.Dir(p)
		}
	}
	for _, tool := range []string{"initdb", "pg_ctl"} {
		if _, err := os.Stat(filepath.Join(dir, tool)); err != nil {
			return "", fmt.Errorf("faulttest: no PostgreSQL server binaries found (looked for %s in %q): install the server package (apt-get install postgresql) or set %s to the directory holding initdb and pg_ctl", tool, dir, PGBinEnv)
		}
	}
	return dir, nil
}

// pgMajor is the major version in /usr/lib/postgresql/<major>/bin/initdb.
func pgMajor(path string) int {
	n, _ := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(path))))
	return n
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// postgresUser is the credential of the operating-system user "postgres".
func postgresUser() (*syscall.Credential, error) {
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("faulttest: running as root, and initdb refuses root: need an operating-system user \"postgres\" to run PostgreSQL as: %w", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		return nil, fmt.Errorf("faulttest: user postgres: %w", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// configure picks a free port and writes the harness's settings.
func (c *Cluster) configure() error {
	l, err := (&net.ListenConfig{}).Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("faulttest: find a free port: %w", err)
	}
	addr, ok := l.Addr().(*net.TCPAddr)
	_ = l.Close()
	if !ok {
		return fmt.Errorf("faulttest: find a free port: got address %v", l.Addr())
	}
	c.port = addr.Port
	conf := []string{
		"port = " + strconv.Itoa(c.port),
		"listen_addresses = '127.0.0.1'",
		"unix_socket_directories = '" + c.dir + "'",
		// The faults under test are PostgreSQL's and the clients', not the
		// machine's: without fsync an immediate shutdown still recovers
		// every commit from the WAL in the page cache.
		"fsync = off",
		"max_connections = 200",
		"log_min_messages = warning",
	}
	conf = append(conf, c.cfg.Settings...)
	// postgresql.auto.conf is read last, so these win over initdb's file.
	return os.WriteFile(filepath.Join(c.data, "postgresql.auto.conf"), []byte(strings.Join(conf, "\n")+"\n"), 0o600)
}

// run runs a PostgreSQL tool as the server's user.
func (c *Cluster) run(ctx context.Context, tool string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(c.cfg.BinDir, tool), args...)
	cmd.Dir = c.dir
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	if c.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: c.cred}
	}
	// pg_ctl's server does not keep our pipes (its output goes to -l),
	// but do not hang on it if it ever does.
	cmd.WaitDelay = 5 * time.Second
	return cmd.CombinedOutput()
}

// Port is the cluster's TCP port on 127.0.0.1.
func (c *Cluster) Port() int { return c.port }

// URL is a connection string for database db (the cluster has "postgres"
// and whatever CreateDatabase made), as the superuser.
func (c *Cluster) URL(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", c.port, db)
}

// CreateDatabase creates database db and returns its URL.
func (c *Cluster) CreateDatabase(ctx context.Context, db string) (string, error) {
	conn, err := pgx.Connect(ctx, c.URL("postgres"))
	if err != nil {
		return "", fmt.Errorf("faulttest: connect: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{db}.Sanitize()); err != nil {
		return "", fmt.Errorf("faulttest: create database %s: %w", db, err)
	}
	return c.URL(db), nil
}

// Start starts the server and returns once it accepts connections (after
// crash recovery, when the last stop was immediate).
func (c *Cluster) Start(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.running {
		return nil
	}
	secs := strconv.Itoa(int(c.cfg.StartTimeout.Seconds()))
	if out, err := c.run(ctx, "pg_ctl", "start", "-w", "-t", secs, "-D", c.data, "-l", filepath.Join(c.dir, "server.log")); err != nil {
		return fmt.Errorf("pg_ctl start: %w\n%s\nserver log:\n%s", err, out, c.logTail())
	}
	c.running = true
	return nil
}

// Stop stops the server in mode and returns once it is down.
func (c *Cluster) Stop(ctx context.Context, mode ShutdownMode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.running {
		return nil
	}
	if out, err := c.run(ctx, "pg_ctl", "stop", "-w", "-m", string(mode), "-D", c.data); err != nil {
		return fmt.Errorf("faulttest: pg_ctl stop -m %s: %w\n%s", mode, err, out)
	}
	c.running = false
	return nil
}

// Restart stops the server in mode, keeps it down for down (the outage
// clients live through), and starts it again.
func (c *Cluster) Restart(ctx context.Context, mode ShutdownMode, down time.Duration) error {
	if err := c.Stop(ctx, mode); err != nil {
		return err
	}
	if down > 0 {
		t := time.NewTimer(down)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	return c.Start(ctx)
}

// logTail is the end of the server's log, for error messages.
func (c *Cluster) logTail() string {
	b, err := os.ReadFile(filepath.Join(c.dir, "server.log"))
	if err != nil {
		return "(no server log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-20):], "\n")
}
