package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/shell"
	"github.com/converge-es/converge/saga"
)

// sagasDefaultWait is how long `sagas retry` and `sagas cancel` wait for an
// engine to carry their request out: a little over two of the engine's
// default sweep intervals.
const sagasDefaultWait = 12 * time.Second

// statuses are the instance statuses --status accepts.
var statuses = []saga.Status{
	saga.StatusRunning, saga.StatusParked, saga.StatusCompensating,
	saga.StatusCompleted, saga.StatusFailed, saga.StatusCancelled,
}

// sagasCmd holds what every `converge sagas` subcommand shares.
type sagasCmd struct {
	db   *dbOptions
	typ  string
	json bool
	out  io.Writer
}

func newSagasCmd() *cobra.Command {
	c := &sagasCmd{}
	cmd := &cobra.Command{
		Use:   "sagas",
		Short: "List, inspect, retry and cancel saga instances",
		Long: `sagas reads saga instances from --schema directly: it needs no saga
definitions, so it works from any machine that reaches the database.

An instance is named by its id; give --type when two saga types have an
instance with that id (and on large deployments: without it the id is
looked up among every instance).

retry and cancel record a request that an engine running the saga type
carries out at its next parked-step pass (within its sweep interval, 5s by
default), with the outcome in the instance's history. They wait up to --wait
for it and say what happened; with no engine running, the request stays
until one starts. Exit status: 0 carried out (or recorded, with --wait 0),
1 on an error or when the engine refused the request (the instance ended
meanwhile, say), 4 when --wait ran out first (the request stays recorded).
The wait starts with the command. Recording takes the instance's row,
which a step running or a stalled process may hold: it gets --wait, 5s at
least, then exits 4 saying the request may not be recorded (running the
command again is safe).`,
		Args: cobra.NoArgs,
		// An empty --type, given, is refused by every subcommand rather
		// than read as no type.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("type") && c.typ == "" {
				return emptyFlag("type", "name a saga type, or leave --type out to look in every type")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.PersistentFlags().StringVar(&c.typ, "type", "", "saga type (its stored name)")
	cmd.PersistentFlags().BoolVar(&c.json, "json", false, "print JSON instead of tables")
	cmd.AddCommand(c.listCmd(), c.showCmd(), c.retryCmd(), c.cancelCmd())
	return cmd
}

// open connects and returns an Operator; close releases the connections.
func (c *sagasCmd) open(cmd *cobra.Command) (op *saga.Operator, closeFn func(), err error) {
	db, err := dbOptionsFrom(cmd)
	if err != nil {
		return nil, nil, err
	}
	c.db = db
	c.out = cmd.OutOrStdout()
	ctx := cmd.Context()
	pool, err := db.openPool(ctx)
	if err != nil {
		return nil, nil, err
	}
	store, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: db.Schema, DisableListen: true, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	op, err = saga.NewOperator(&saga.OperatorConfig{Source: store})
	if err != nil {
		_ = store.Close()
		pool.Close()
		return nil, nil, err
	}
	return op, func() { _ = store.Close(); pool.Close() }, nil
}

func (c *sagasCmd) listCmd() *cobra.Command {
	var status string
	var stuckFor time.Duration
	var limit int
	var after string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List saga instances, filtered by type, status and how long their step has been parked",
		Long: `list prints the instances that pass the filters, in a stable order (saga
type, then id as stored), at most --limit of them. When a page is full,
a last line on standard error gives the --after that lists the next page.

A --type of which --schema holds no instance at all (a mistyped name, the
wrong --schema) is an error (exit status 1, nothing on standard output)
that lists the saga types stored there; a stored type whose instances the
other filters all leave out lists nothing, with exit status 0. An empty
--type or --status is an error too, not the absence of the filter.`,
		Example: `  converge sagas list --status failed
  converge sagas list --type order_fulfilment --stuck-for 30s --json
  converge sagas list --limit 100 --after 'order_fulfilment/order-1234'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cmd.Flags().Changed("status") && !validStatus(saga.Status(status)) {
				return fmt.Errorf("--status %q: use one of %s", status, statusNames())
			}
			if stuckFor < 0 {
				return fmt.Errorf("--stuck-for %s: use a positive duration such as 30s", stuckFor)
			}
			if limit < 1 {
				return fmt.Errorf("--limit %d: use a positive count", limit)
			}
			op, closeFn, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			var list []saga.Info
			if c.typ == "" || saga.ValidateName(c.typ) == nil {
				list, err = op.List(cmd.Context(), saga.Filter{Saga: c.typ, Status: saga.Status(status), StuckLongerThan: stuckFor, Limit: limit, After: after})
				if err != nil {
					return err
				}
			}
			if len(list) == 0 && c.typ != "" {
				// Nothing listed: say so when --type names no stored type
				// (a typo reads as "nothing wrong" otherwise), before
				// anything is printed.
				if err := c.checkType(cmd.Context(), op); err != nil {
					return err
				}
			}
			if c.json {
				err = writeJSONLines(c.out, list)
			} else {
				err = writeInstanceTable(c.out, list, time.Now())
			}
			if err == nil && len(list) == limit {
				// On standard error, so --json output stays JSON lines.
				_, err = fmt.Fprintf(cmd.ErrOrStderr(), "more instances may follow: list them with --after %s\n", shell.Quote(list[len(list)-1].Cursor()))
			}
			return err
		},
	}
	cmd.Flags().StringVar(&status, "status", "", "keep instances with this status: "+statusNames())
	cmd.Flags().DurationVar(&stuckFor, "stuck-for", 0, "keep instances whose step has been parked longer than this (e.g. 30s)")
	cmd.Flags().IntVar(&limit, "limit", 1000, "list at most this many instances")
	cmd.Flags().StringVar(&after, "after", "", "list the instances after this cursor (the one a full page's last line gives)")
	return cmd
}

func (c *sagasCmd) showCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show an instance and its timeline: messages, waits and parks, commands, timers, compensations, errors",
		Long: `show prints an instance, its state and its timeline: messages, waits and
parks, commands, timers, compensations, errors, and the messages ignored
for its id before it started.

An id with no instance fails (exit status 1). When messages correlated to
it were ignored for want of an instance (a saga.On handler's event, which
never starts one, or a timer fired for an instance that no longer exists),
show first says that no instance has the id and lists them: time, event id,
event type and reason, in every saga type or in --type's. With --json, one
line per saga type: {"saga", "id", "instance": false, "ignored": [...]}.`,
		Example: `  converge sagas show order-42
  converge sagas show order-42 --type order_fulfilment --json`,
		Args: exactlyOne("instance id", "converge sagas list"),
		RunE: func(cmd *cobra.Command, args []string) error {
			op, closeFn, err := c.open(cmd)
			if err != nil {
				return err
			}
			defer closeFn()
			ctx, id := cmd.Context(), args[0]
			typ, err := c.resolve(ctx, op, id)
			if errors.Is(err, saga.ErrNotFound) {
				found, ferr := op.FindIgnored(ctx, id)
				if ferr != nil {
					return ferr
				}
				return c.showIgnored(err, id, "", found)
			}
			if err != nil {
				return err
			}
			tl, err := op.Show(ctx, typ, id)
			if errors.Is(err, saga.ErrNotFound) && len(tl.Ignored) > 0 {
				return c.showIgnored(err, id, typ, []saga.IgnoredFor{{Saga: typ, ID: id, Ignored: tl.Ignored}})
			}
			if err != nil {
				return err
			}
			if c.json {
				return writeJSONLines(c.out, []saga.Timeline{tl})
			}
			return writeTimeline(c.out, tl)
		},
	}
}

// noInstance is what `sagas show --json` prints for an id with no
// instance of a saga type that ignored messages for it; Instance is always
// false, so a script tells it from a Timeline.
type noInstance struct {
	saga.IgnoredFor
	Instance bool `json:"instance"`
}

// showIgnored prints, for an id that has no instance (notFound, the
// ErrNotFound that says so), the messages ignored for it in the saga type
// typ ("": any); it returns notFound, saying that the messages are listed,
// so the command still fails as for any id not found.
func (c *sagasCmd) showIgnored(notFound error, id, typ string, found []saga.IgnoredFor) error {
	if len(found) == 0 {
		return notFound
	}
	what := "saga instance"
	if typ != "" {
		what = typ + " instance"
	}
	var err error
	if c.json {
		lines := make([]noInstance, len(found))
		for i, f := range found {
			lines[i] = noInstance{IgnoredFor: f}
		}
		err = writeJSONLines(c.out, lines)
	} else {
		err = writeIgnored(c.out, what, id, found)
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: no %s has id %q (the messages ignored for it are on standard output)", saga.ErrNotFound, what, id)
}

func (c *sagasCmd) retryCmd() *cobra.Command {
	var wait time.Duration
	cmd := &cobra.Command{
		Use:   "retry ID",
		Short: "Run a failed instance's failed step again, or restart a stuck instance's stuck clock",
		Args:  exactlyOne("instance id", "converge sagas list"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return c.request(cmd, args[0], wait, "", func(ctx context.Context, op *saga.Operator, typ string) (saga.Request, error) {
				return op.RequestRetry(ctx, typ, args[0])
			})
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", sagasDefaultWait, "how long to wait for an engine to carry the request out (0: do not wait)")
	return cmd
}

func (c *sagasCmd) cancelCmd() *cobra.Command {
	var wait time.Duration
	var reason string
	var skipOnCancel bool
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "End an instance: cancel its timers and drop its parked step and queued messages",
		Long: `cancel ends an instance: the engine that carries the request out runs the
saga's OnCancel handler, when it has one, in the cancel's unit (what it
sends and compensates commits with the cancel), then cancels the
instance's timers and drops its parked step and queued messages.

The handler needs the instance's state. When a newer build stored it and
the deploy was rolled back, an engine of the older build cannot read it:
the request waits for an engine of the newer build. If that build will not
run again, cancel with --skip-on-cancel: the instance ends without its
OnCancel handler (nothing it would send or undo is), and its history says
that the handler did not run. A request with --skip-on-cancel replaces a
cancel request still waiting.`,
		Example: `  converge sagas cancel order-42 --reason 'customer left'
  converge sagas cancel order-42 --skip-on-cancel --reason 'rolled back'`,
		Args: exactlyOne("instance id", "converge sagas list"),
		RunE: func(cmd *cobra.Command, args []string) error {
			hint := ""
			if !skipOnCancel {
				hint = " (an engine that cannot read the instance's state, stored by a newer build, leaves the cancel to that build, to run its OnCancel handler: if it no longer runs, after a rollback, cancel with --skip-on-cancel to end the instance without the handler)"
			}
			return c.request(cmd, args[0], wait, hint, func(ctx context.Context, op *saga.Operator, typ string) (saga.Request, error) {
				return op.RequestCancelWith(ctx, typ, args[0], saga.CancelOptions{Reason: reason, SkipOnCancel: skipOnCancel})
			})
		},
	}
	cmd.Flags().DurationVar(&wait, "wait", sagasDefaultWait, "how long to wait for an engine to carry the request out (0: do not wait)")
	cmd.Flags().StringVar(&reason, "reason", "cancelled by an operator", "reason recorded on the instance")
	cmd.Flags().BoolVar(&skipOnCancel, "skip-on-cancel", false, "end the instance without running the saga's OnCancel handler (nothing it would send or undo is): for an instance whose state only a build that no longer runs can read, after a rollback")
	return cmd
}

// recordedRequest is what `retry` and `cancel` print with --json and
// --wait 0: the request as recorded (an engine may carry it out at once).
type recordedRequest struct {
	Saga    string       `json:"saga"`
	ID      string       `json:"id"`
	Request saga.Request `json:"request"`
}

// request records a retry or cancel and waits for an engine to take it;
// waitHint ends what it says when no engine took the request in time.
func (c *sagasCmd) request(cmd *cobra.Command, id string, wait time.Duration, waitHint string, do func(context.Context, *saga.Operator, string) (saga.Request, error)) error {
	if wait < 0 {
		return fmt.Errorf("--wait %s: use a positive duration, or 0 not to wait", wait)
	}
	op, closeFn, err := c.open(cmd)
	if err != nil {
		return err
	}
	defer closeFn()
	ctx := cmd.Context()
	// Every wait has a deadline, also the one for the instance's row: the
	// request is recorded under its lock, which a step running or a stalled
	// process may hold. The recording gets --wait, and minRecording at
	// least; the wait for the outcome ends --wait after the start.
	rctx, cancelRecord, unrecorded, waitLeft := recordingWithin(ctx, wait)
	defer cancelRecord()
	deadline := time.Now().Add(waitLeft())
	typ, err := c.resolve(rctx, op, id)
	if err != nil {
		return unrecorded(id, err)
	}
	before, err := op.Show(rctx, typ, id)
	if err != nil {
		return unrecorded(id, err)
	}
	req, err := do(rctx, op, typ)
	if err != nil {
		return unrecorded(id, err)
	}
	if wait == 0 {
		if c.json {
			// The request as recorded: an engine may have taken it
			// already, and a read of it now would find nothing.
			return writeJSONLines(c.out, []recordedRequest{{Saga: typ, ID: id, Request: req}})
		}
		_, err := fmt.Fprintf(c.out, "%s/%s: request recorded; an engine running %s carries it out\n", typ, id, typ)
		return err
	}
	// Every wait has a deadline, also when the database stops answering:
	// the polls, and the read of the outcome after them, end with --wait.
	var unanswered error // the last poll's failure to read the database in time
	_, err = pollUntil(ctx, io.Discard, time.Until(deadline), func(ctx context.Context) (string, bool, error) {
		_, pending, err := op.Pending(ctx, typ, id)
		unanswered = err
		return "", err == nil && !pending, err
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded) && unanswered != nil:
		return &timedOutError{what: fmt.Sprintf("%s/%s: the database did not answer within %s (%v); the request stays recorded and an engine running saga type %s carries it out (see `converge sagas show --type %s -- %s`)", typ, id, wait, unanswered, typ, shell.Quote(typ), shell.Quote(id))}
	case errors.Is(err, context.DeadlineExceeded):
		return &timedOutError{what: fmt.Sprintf("%s/%s: no engine running saga type %s took the request within %s; it stays recorded and runs when one does (start it, or wait longer with --wait)%s", typ, id, typ, wait, waitHint)}
	case err != nil:
		return err
	}
	showCtx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	tl, err := op.Show(showCtx, typ, id)
	if err != nil && ctx.Err() == nil && showCtx.Err() != nil {
		return &timedOutError{what: fmt.Sprintf("%s/%s: an engine took the request, but the database did not answer within %s to say how it went (%v); see `converge sagas show --type %s -- %s`", typ, id, wait, err, shell.Quote(typ), shell.Quote(id))}
	}
	if err != nil {
		return err
	}
	line, err := requestOutcome(typ, id, before, tl)
	if err != nil {
		return err
	}
	if c.json {
		return writeJSONLines(c.out, []saga.Info{tl.Info})
	}
	_, err = fmt.Fprintln(c.out, line)
	return err
}

// requestOutcome is what retry and cancel say once an engine took the
// request: the instance's status after it, with its last history entry,
// or the error of a request the engine refused.
func requestOutcome(typ, id string, before, after saga.Timeline) (string, error) {
	// The engine drops a request the instance cannot take (it ended
	// meanwhile, say) and says why in the history.
	for _, h := range after.History[min(len(before.History), len(after.History)):] {
		if h.Kind == saga.KindRequestRefused {
			return "", fmt.Errorf("%s/%s: the engine refused the request: %s", typ, id, printable(h.Detail))
		}
	}
	last := ""
	if n := len(after.History); n > 0 {
		h := after.History[n-1]
		last = h.Kind
		if h.Detail != "" {
			last += ": " + printable(h.Detail)
		}
	}
	return fmt.Sprintf("%s/%s: %s (last: %s)", typ, id, after.Info.Status, last), nil
}

// checkType fails when --type names a saga type of which the schema holds
// no instance, listing the types it holds: a mistyped type otherwise
// lists nothing, which reads as "nothing wrong".
func (c *sagasCmd) checkType(ctx context.Context, op *saga.Operator) error {
	why := ""
	if err := saga.ValidateName(c.typ); err != nil {
		why = " (no saga type can have that name: " + strings.TrimPrefix(err.Error(), "saga: ") + ")"
	} else {
		some, err := op.List(ctx, saga.Filter{Saga: c.typ, Limit: 1})
		if err != nil {
			return err
		}
		if len(some) > 0 {
			return nil
		}
	}
	types, err := storedSagaTypes(ctx, op)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("sagas list: no saga of type %s is stored in schema %q%s", strconv.Quote(c.typ), c.db.Schema, why)
	if len(types) == 0 {
		return fmt.Errorf("%s: it holds no saga instance yet (wrong --schema, or has no saga engine run there?)", what)
	}
	return fmt.Errorf("%s; stored types: %s", what, strings.Join(types, ", "))
}

// storedSagaTypes returns the saga types with an instance stored, in
// name order. It reads one instance per type: instances are listed in
// the order of their keys, the type's name, "/", then the escaped id,
// compared byte by byte (see saga.Operator.List), so the cursor
// "TYPE0" ('0' follows '/') comes after every instance of TYPE and
// before those of the next type.
func storedSagaTypes(ctx context.Context, op *saga.Operator) ([]string, error) {
	var types []string
	after := ""
	for {
		next, err := op.List(ctx, saga.Filter{After: after, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(next) == 0 {
			slices.Sort(types)
			return types, nil
		}
		typ := next[0].Saga
		types = append(types, typ)
		after = typ + "0"
	}
}

// resolve returns the saga type of the instance id: --type, else the only
// type with an instance of that id.
func (c *sagasCmd) resolve(ctx context.Context, op *saga.Operator, id string) (string, error) {
	if c.typ != "" {
		return c.typ, nil
	}
	found, err := op.Find(ctx, id)
	if err != nil {
		return "", err
	}
	switch len(found) {
	case 0:
		return "", fmt.Errorf("%w: no saga instance has id %q (list them with `converge sagas list`)", saga.ErrNotFound, id)
	case 1:
		return found[0].Saga, nil
	}
	types := make([]string, len(found))
	for i, in := range found {
		types[i] = in.Saga
	}
	return "", fmt.Errorf("instance id %q exists in several saga types (%s): choose one with --type", id, strings.Join(types, ", "))
}

func validStatus(s saga.Status) bool {
	for _, v := range statuses {
		if v == s {
			return true
		}
	}
	return false
}

func statusNames() string {
	names := make([]string, len(statuses))
	for i, s := range statuses {
		names[i] = string(s)
	}
	return strings.Join(names, ", ")
}

func writeJSONLines[T any](w io.Writer, vs []T) error {
	enc := json.NewEncoder(w)
	for _, v := range vs {
		if err := enc.Encode(v); err != nil {
			return err
		}
	}
	return nil
}

func writeInstanceTable(w io.Writer, list []saga.Info, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TYPE\tID\tSTATUS\tSTEPS\tPARKED\tWAITING\tQUEUED\tUPDATED\tREASON")
	for _, in := range list {
		parked, waiting := "-", "-"
		if !in.ParkedSince.IsZero() {
			parked = now.Sub(in.ParkedSince).Round(time.Millisecond).String()
			if in.Stuck {
				parked += " (stuck)"
			}
		}
		if len(in.Waiting) > 0 {
			waiting = printable(strings.Join(in.Waiting, ","))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%d\t%s\t%s\n", printable(in.Saga), printable(in.ID), in.Status, in.Steps, parked, waiting, in.Queued,
			in.Updated.Format(time.RFC3339), printable(in.Reason))
	}
	return tw.Flush()
}

// writeIgnored says that no instance (what: "saga instance" or the saga
// type's) has id and lists the messages ignored for it.
func writeIgnored(w io.Writer, what, id string, found []saga.IgnoredFor) error {
	fmt.Fprintf(w, "no %s has id %q; messages correlated to it were ignored:\n\n", what, id)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SAGA\tAT\tEVENT ID\tEVENT TYPE\tREASON")
	for _, f := range found {
		for _, m := range f.Ignored {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", printable(f.Saga), m.At.Format("2006-01-02T15:04:05.000Z07:00"), printable(m.EventID), printable(m.EventType), printable(m.Reason))
		}
	}
	return tw.Flush()
}

func writeTimeline(w io.Writer, tl saga.Timeline) error {
	in := tl.Info
	fmt.Fprintf(w, "%s/%s  status %s  steps %d  version %d  token %s\n", printable(in.Saga), printable(in.ID), in.Status, in.Steps, in.Version, in.Token)
	if in.Reason != "" {
		fmt.Fprintf(w, "reason: %s\n", printable(in.Reason))
	}
	if !in.ParkedSince.IsZero() {
		writeParked(w, in)
	}
	for name, due := range in.Timers {
		fmt.Fprintf(w, "timer %s due %s\n", printable(name), due.Format(time.RFC3339Nano))
	}
	if in.Queued > 0 {
		fmt.Fprintf(w, "%d messages queued behind the blocked step\n", in.Queued)
	}
	if r := tl.Request; r != nil {
		fmt.Fprintf(w, "pending %s request since %s (an engine running %s carries it out)\n", r.Op, r.At.Format(time.RFC3339), in.Saga)
	}
	if !in.Ended.IsZero() {
		fmt.Fprintf(w, "ended %s\n", in.Ended.Format(time.RFC3339))
	}
	if !in.Purged.IsZero() {
		fmt.Fprintf(w, "history before %s purged by retention (EngineConfig.Retention); state dropped\n\n", in.Purged.Format(time.RFC3339))
	} else {
		fmt.Fprintf(w, "state: %s\n\n", printable(string(in.State)))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SEQ\tAT\tKIND\tEVENT\tDETAIL")
	for _, h := range tl.History {
		event := "-"
		if h.EventType != "" {
			event = printable(h.EventType) + " " + printable(h.EventID)
		}
		detail := printable(h.Detail)
		if len(h.Models) > 0 {
			detail = strings.TrimSpace(fmt.Sprintf("%s models=%s token=%s", detail, printable(strings.Join(h.Models, ",")), h.Token))
		}
		if h.Waited != "" {
			detail = strings.TrimSpace(detail + " waited=" + printable(h.Waited))
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", h.Seq, h.At.Format("15:04:05.000"), h.Kind, event, detail)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, m := range tl.Ignored {
		if _, err := fmt.Fprintf(w, "ignored %s %s at %s: %s\n", printable(m.EventType), printable(m.EventID), m.At.Format(time.RFC3339), printable(m.Reason)); err != nil {
			return err
		}
	}
	return nil
}

// writeParked says what a parked step waits for: read models to reach a
// token, or its retry time after failures (or both).
func writeParked(w io.Writer, in saga.Info) {
	on := ""
	if in.ParkedType != "" {
		on = " on " + printable(in.ParkedType) + " " + printable(in.ParkedEvent)
	}
	fmt.Fprintf(w, "parked since %s%s", in.ParkedSince.Format(time.RFC3339Nano), on)
	if len(in.Waiting) > 0 {
		fmt.Fprintf(w, ", waiting for %s to reach %s", printable(strings.Join(in.Waiting, ", ")), in.WaitToken)
	}
	fmt.Fprintf(w, " (stuck: %t)\n", in.Stuck)
	if in.Attempts > 0 {
		fmt.Fprintf(w, "failed %d times; next attempt at %s; last error: %s\n", in.Attempts, in.RetryAt.Format(time.RFC3339Nano), printable(in.LastError))
	}
}
