package faulttest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RoleEnv is the environment variable that tells a re-executed test binary
// which Role to run instead of its tests.
const RoleEnv = "CONVERGE_FAULTTEST_ROLE"

// Role is the body of a worker process. It runs until ctx ends (the
// process got SIGTERM or SIGINT) and should then shut down gracefully; a
// SIGKILL gives it no chance to, which is the point of the harness.
type Role func(ctx context.Context, w *Worker) error

// Main runs the Role named by RoleEnv and exits, when the process was
// started by StartProcess; otherwise it returns at once. Call it first in
// TestMain, before anything else runs:
//
//	func TestMain(m *testing.M) {
//		faulttest.Main(map[string]faulttest.Role{"projection-worker": projectionWorker})
//		goleak.VerifyTestMain(m)
//	}
func Main(roles map[string]Role) {
	name := os.Getenv(RoleEnv)
	if name == "" {
		return
	}
	role, ok := roles[name]
	if !ok {
		fmt.Fprintf(os.Stderr, "faulttest: no role %q (have %d roles): pass it to faulttest.Main\n", name, len(roles))
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	err := role(ctx, &Worker{out: os.Stdout})
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "faulttest: role %s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Worker is what a Role gets from the harness.
type Worker struct {
	mu  sync.Mutex
	out io.Writer
}

// Env returns the value of an environment variable the test set in
// ProcessConfig.Env.
func (w *Worker) Env(key string) string { return os.Getenv(key) }

// Report sends a report to the test (ProcessConfig.OnReport), e.g.
// Report("lease", "acquired"). It is safe for concurrent use.
func (w *Worker) Report(kind, value string) {
	b, _ := json.Marshal(Report{Kind: kind, Value: value, At: time.Now()})
	w.mu.Lock()
	defer w.mu.Unlock()
	_, _ = w.out.Write(append(b, '\n'))
}

// Report is one line a worker sent with Worker.Report.
type Report struct {
	// Process is the ProcessConfig.Name of the sender, and Pid its process
	// id (which changes with every restart).
	Process string `json:"-"`
	Pid     int    `json:"-"`
	Kind    string `json:"kind"`
	Value   string `json:"value"`
	// At is when the worker sent it.
	At time.Time `json:"at"`
}

// ProcessConfig configures StartProcess.
type ProcessConfig struct {
	// Role is the Role the process runs (a key of Main's map). Required.
	Role string
	// Name tells processes apart in reports and logs. Defaults to Role.
	Name string
	// Env is added to the process's environment ("KEY=value"). Defaults
	// to none: the process inherits the test's environment.
	Env []string
	// OnReport, when set, receives every Report the process sends, on the
	// goroutine reading its output: it must not block. Defaults to nil.
	OnReport func(Report)
	// LogDir is where the process's stderr goes (<Name>.log, appended to
	// across restarts); its tail is printed when the test fails. Defaults
	// to a temporary directory of the test.
	LogDir string
}

// Process is a worker process: the test binary itself, re-executed to run
// one Role. It can be killed (SIGKILL) and started again any number of
// times; it is killed when the test ends, and dies with the test process
// (Pdeathsig) if that dies first.
type Process struct {
	t   testing.TB
	cfg ProcessConfig
	log string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited and its output is read
	err  error         // cmd.Wait's result, once done
}

// StartProcess starts a worker process running cfg.Role.
func StartProcess(tb testing.TB, cfg *ProcessConfig) *Process {
	tb.Helper()
	p := &Process{t: tb, cfg: *cfg}
	if p.cfg.Role == "" {
		tb.Fatal("faulttest: ProcessConfig.Role is empty: name a role passed to faulttest.Main")
	}
	p.cfg.Name = cmpOr(p.cfg.Name, p.cfg.Role)
	p.cfg.LogDir = cmpOr(p.cfg.LogDir, tb.TempDir())
	p.log = filepath.Join(p.cfg.LogDir, p.cfg.Name+".log")
	tb.Cleanup(func() {
		_ = p.Kill()
		if tb.Failed() {
			tb.Logf("faulttest: last lines of %s's log:\n%s", p.cfg.Name, tail(p.log, 30))
		}
	})
	if err := p.Start(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// Name is the process's ProcessConfig.Name.
func (p *Process) Name() string { return p.cfg.Name }

// Start starts the process again after it was killed or exited. Starting
// a running process does nothing.
func (p *Process) Start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && !isDone(p.done) {
		return nil
	}
	logf, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("faulttest: open %s: %w", p.log, err)
	}
	exe, err := os.Executable()
	if err != nil {
		_ = logf.Close()
		return fmt.Errorf("faulttest: find the test binary: %w", err)
	}
	// Not CommandContext: the process outlives any one caller's context;
	// Kill and Stop end it.
	cmd := exec.CommandContext(context.Background(), exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), RoleEnv+"="+p.cfg.Role), p.cfg.Env...)
	cmd.Stderr = logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = logf.Close()
		return fmt.Errorf("faulttest: %s: %w", p.cfg.Name, err)
	}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return fmt.Errorf("faulttest: start %s: %w", p.cfg.Name, err)
	}
	done := make(chan struct{})
	p.cmd, p.done, p.err = cmd, done, nil
	pid := cmd.Process.Pid
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r Report
			if json.Unmarshal(sc.Bytes(), &r) != nil || r.Kind == "" {
				_, _ = fmt.Fprintf(logf, "stdout: %s\n", sc.Bytes())
				continue
			}
			r.Process, r.Pid = p.cfg.Name, pid
			if p.cfg.OnReport != nil {
				p.cfg.OnReport(r)
			}
		}
		err := cmd.Wait()
		_ = logf.Close()
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(done)
	}()
	return nil
}

func isDone(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Pid is the process id of the current run (0 before the first start).
func (p *Process) Pid() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd == nil {
		return 0
	}
	return p.cmd.Process.Pid
}

// Running reports whether the process is running.
func (p *Process) Running() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cmd != nil && !isDone(p.done)
}

// Exited returns a channel closed when the current run has exited.
func (p *Process) Exited() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.done
}

// Kill sends SIGKILL and waits until the process is gone. Killing a
// process that is not running does nothing.
func (p *Process) Kill() error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isDone(done) {
		return nil
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("faulttest: kill %s: %w", p.cfg.Name, err)
	}
	<-done
	return nil
}

// Freeze sends SIGSTOP: the process stops running but keeps its
// connections, open transactions and leases, like a process stuck in a
// long GC pause or a frozen VM. Thaw resumes it.
func (p *Process) Freeze() error { return p.signal(syscall.SIGSTOP) }

// Thaw sends SIGCONT to a frozen process.
func (p *Process) Thaw() error { return p.signal(syscall.SIGCONT) }

func (p *Process) signal(sig syscall.Signal) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isDone(done) {
		return fmt.Errorf("faulttest: %s is not running", p.cfg.Name)
	}
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("faulttest: signal %s: %w", p.cfg.Name, err)
	}
	return nil
}

// Stop sends SIGTERM and waits for the process to exit. It returns an
// error when the process exited with a failure (a Role error, or 66 when
// the race detector found a race) or did not exit before ctx ended (it is
// killed then).
func (p *Process) Stop(ctx context.Context) error {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil || isDone(done) {
		return nil // not running: a kill or an exit was seen already
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-ctx.Done():
		_ = p.Kill()
		return fmt.Errorf("faulttest: %s did not exit after SIGTERM: %w\nlog:\n%s", p.cfg.Name, ctx.Err(), tail(p.log, 30))
	}
	p.mu.Lock()
	err := p.err
	p.mu.Unlock()
	if err != nil && !diedOfSIGTERM(err) {
		return fmt.Errorf("faulttest: %s exited with %w\nlog:\n%s", p.cfg.Name, err, tail(p.log, 30))
	}
	return nil
}

// diedOfSIGTERM reports a process that SIGTERM killed. Main catches the
// signal before it runs the Role, so that process was still starting (a
// restart just before the test stopped its workers, say): its Role never
// ran, and there was nothing to stop gracefully.
func diedOfSIGTERM(err error) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGTERM
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}
