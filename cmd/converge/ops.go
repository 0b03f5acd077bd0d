package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/spf13/pflag"

	"github.com/converge-es/converge/events/pgstore"
)

// Shared by the operator's commands (projections, dead-letters, sagas): how
// they open the store and how --wait waits.

// exitTimedOut is the exit status of a --wait that ran out: the request
// stays recorded and may still be carried out.
const exitTimedOut = 4

// defaultWaitTimeout bounds --wait unless --timeout says otherwise.
const defaultWaitTimeout = 5 * time.Minute

// waitPoll is how often --wait reads the request's state.
const waitPoll = 200 * time.Millisecond

// openOpsStore opens the store of --schema for a command that reads and
// writes rows and waits by polling: no LISTEN connection. The caller calls
// close.
func openOpsStore(ctx context.Context, db *dbOptions) (store *pgstore.Store, closeAll func(), err error) {
	pool, err := db.openPool(ctx)
	if err != nil {
		return nil, nil, err
	}
	store, err = pgstore.New(ctx, pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	if err != nil {
		pool.Close()
		return nil, nil, err // an unmigrated schema's error says to run converge migrate
	}
	return store, func() { _ = store.Close(); pool.Close() }, nil
}

// waitFlags are the --wait and --timeout flags of a command that records a
// request for a running application.
type waitFlags struct {
	wait    bool
	timeout time.Duration
	flags   *pflag.FlagSet
}

// register adds --wait (described by waitUsage) and --timeout to f.
func (w *waitFlags) register(f *pflag.FlagSet, waitUsage string) {
	f.BoolVar(&w.wait, "wait", false, waitUsage)
	f.DurationVar(&w.timeout, "timeout", defaultWaitTimeout, "how long --wait waits")
	w.flags = f
}

func (w *waitFlags) validate() error {
	if w.timeout <= 0 {
		return fmt.Errorf("--timeout %s: use a positive duration such as 2m", w.timeout)
	}
	// Without --wait nothing waits: a --timeout given then would be
	// ignored, and the user who gave it expected a wait.
	if !w.wait && w.flags != nil && w.flags.Changed("timeout") {
		return errors.New("--timeout applies to --wait only: add --wait, or leave --timeout out")
	}
	return nil
}

// minRecording is the least time a request command gives the database
// to record its request, whatever --wait or --timeout says: a database
// slow to answer a short wait is not a refusal. Past it, a row that
// another transaction holds ends the command instead of holding it.
const minRecording = 5 * time.Second

// recording bounds the recording of a request, which takes a row's lock
// that a running unit or a stalled process may hold: by --timeout with
// --wait, and by minRecording at least. waitLeft is what is left of
// --timeout, counted from the start, for the wait after the recording.
// unrecorded turns a failure of the recording into a timedOutError when
// that bound ended it. It says the request may not be recorded: a bound
// that ends the wait for the COMMIT's reply leaves the outcome unknown.
func (w *waitFlags) recording(ctx context.Context) (rctx context.Context, cancel context.CancelFunc, unrecorded func(what string, err error) error, waitLeft func() time.Duration) {
	wait := time.Duration(0)
	if w.wait {
		wait = w.timeout
	}
	return recordingWithin(ctx, wait)
}

// recordingWithin is waitFlags.recording for a wait of the given length
// (0: none), which sagas retry and cancel take as --wait.
func recordingWithin(ctx context.Context, wait time.Duration) (rctx context.Context, cancel context.CancelFunc, unrecorded func(what string, err error) error, waitLeft func() time.Duration) {
	start := time.Now()
	bound := max(wait, minRecording)
	rctx, cancel = context.WithTimeout(ctx, bound)
	return rctx, cancel, func(what string, err error) error {
			return unrecordedError(ctx, rctx, bound, what, err)
		}, func() time.Duration {
			return time.Until(start.Add(wait))
		}
}

// unrecordedError is err, or the timedOutError that says the request may
// not be recorded when rctx's bound ended the recording.
func unrecordedError(ctx, rctx context.Context, bound time.Duration, what string, err error) error {
	if err == nil || ctx.Err() != nil || rctx.Err() == nil {
		return err
	}
	return &timedOutError{what: fmt.Sprintf("%s: the request may not have been recorded: the database did not answer within %s (%v); another transaction may hold its row (a unit running, a stalled process). Run the command again later: a request recorded twice is carried out once", what, bound, err)}
}

// timedOutError is what a --wait that ran out fails with; main exits with
// exitTimedOut.
type timedOutError struct{ what string }

func (e *timedOutError) Error() string { return e.what }

// ExitCode is the process exit status for this error.
func (e *timedOutError) ExitCode() int { return exitTimedOut }

// errStoppedWaiting is the error of a wait for a recorded request that was
// interrupted (Ctrl-C): the request is not withdrawn, and saying so keeps an
// operator from recording it again.
func errStoppedWaiting(ctx context.Context) error {
	return fmt.Errorf("stopped waiting (%w): the request stays recorded, and the running application still carries it out", context.Cause(ctx))
}

// pollUntil calls check every waitPoll until it reports done or fails, or
// until timeout, printing each new progress line to out.
func pollUntil(parent context.Context, out io.Writer, timeout time.Duration, check func(ctx context.Context) (progress string, done bool, err error)) (last string, err error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	t := time.NewTicker(waitPoll)
	defer t.Stop()
	var failed error // the last check's failure, if it timed out
	for {
		progress, done, err := check(ctx)
		if parent.Err() != nil {
			return last, errStoppedWaiting(parent)
		}
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return last, err
		}
		failed = err
		if err == nil {
			if progress != last && progress != "" {
				if _, werr := fmt.Fprintln(out, progress); werr != nil {
					return last, werr
				}
				last = progress
			}
			if done {
				return last, nil
			}
		}
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		// Checked after either, and by the clock: a tick due as the wait
		// runs out comes with it (or just before ctx's own timer marks it
		// done), and a check started then would fail at once, saying
		// nothing of the database.
		if dl, _ := ctx.Deadline(); ctx.Err() != nil || !time.Now().Before(dl) {
			if parent.Err() != nil {
				return last, errStoppedWaiting(parent)
			}
			if failed != nil {
				// Not only the wait ran out: the database did not answer
				// in time either, and the operator should know.
				return last, fmt.Errorf("%w (the last check could not read the database: %w)", context.DeadlineExceeded, failed)
			}
			return last, context.DeadlineExceeded
		}
	}
}

// namedTwice refuses a list of names that holds one twice (what says
// what they name, such as "projection"): a command would otherwise list
// it twice, or act on it twice and count it twice, as `converge lag`
// refuses.
func namedTwice(what string, names []string) error {
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if seen[n] {
			return fmt.Errorf("%s %s is named twice", what, strconv.Quote(n))
		}
		seen[n] = true
	}
	return nil
}

// emptyFlag is the error of a string flag given with an empty value, the
// mark of a shell variable that is not set: doing what the flag's absence
// does (listing everything, using the default) would act on something the
// user did not name. instead says what to pass, or what leaving the flag
// out does.
func emptyFlag(name, instead string) error {
	return fmt.Errorf("--%s is empty (is the variable you passed set?): %s", name, instead)
}

// printable is s as the terminal should see it: as it is when every
// character prints, else Go-quoted, so an argument or a stored name with
// a NUL or an escape sequence shows as what it is instead of reaching the
// terminal.
func printable(s string) string {
	if utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) {
		return s
	}
	return strconv.Quote(s)
}
