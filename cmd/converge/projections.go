package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/projections"
)

// newProjectionsCmd is `converge projections`: status, resume, rebuild and
// reset of the projections stored in --schema, without their definitions.
func newProjectionsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "projections",
		Short: "Inspect and operate projections: status, resume, rebuild, reset",
		Long: `projections works on the projections stored in --schema: every projection
a projections.Runner has registered there. It needs no projection code:
status and resume read and write the store directly, while rebuild and reset,
which need the projection's handlers, record a request that a running
application's Runner carries out (within its StatusPollInterval).`,
		// A mistyped subcommand is an error, not the help text with status 0.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newProjectionsStatusCmd(), newProjectionsResumeCmd(),
		newProjectionsRequestCmd(projections.OpRebuild), newProjectionsRequestCmd(projections.OpReset))
	return cmd
}

// projectionStatus is one line of `projections status` and its --json form.
type projectionStatus struct {
	Name       string `json:"name"`
	Class      string `json:"class"`
	Generation int    `json:"generation"`
	// Position is the lowest of the live processor's partition checkpoints.
	Position events.Token `json:"position"`
	// Behind counts the events in the feed after Position.
	Behind int64 `json:"behind"`
	// State is "running" or "halted".
	State string `json:"state"`
	// Halts are the halted partitions of the live processor.
	Halts   []feed.HaltRecord    `json:"halts,omitempty"`
	Leases  []leaseInfo          `json:"leases"`
	Rebuild *rebuildInfo         `json:"rebuild,omitempty"`
	Request *projections.Request `json:"request,omitempty"`
}

// leaseInfo is a partition checkpoint's current lease holder.
type leaseInfo struct {
	Checkpoint string    `json:"checkpoint"`
	Owner      string    `json:"owner"`
	Until      time.Time `json:"until"`
}

// rebuildInfo is a rebuild in progress.
type rebuildInfo struct {
	Generation int               `json:"generation"`
	Position   events.Token      `json:"position"`
	Behind     int64             `json:"behind"`
	Halts      []feed.HaltRecord `json:"halts,omitempty"`
	Leases     []leaseInfo       `json:"leases"`
}

type projectionsStatusCmd struct {
	db    *dbOptions
	names []string
	json  bool
	out   io.Writer
}

func newProjectionsStatusCmd() *cobra.Command {
	c := &projectionsStatusCmd{}
	cmd := &cobra.Command{
		Use:   "status [NAME...]",
		Short: "Show each projection's generation, position, lag, halts, rebuild and lease holder",
		Long: `status reports, for each projection stored in --schema (or the ones named),
its active generation, its position and how many events of the feed lie
after it (BEHIND), whether it is halted (and at which event, why), the
rebuild in progress, which process holds its lease, and the latest
rebuild or reset request, with how it ended once it has (done, or failed
and why). A name that is not stored is an error listing the
known ones, and so is a name given twice.`,
		Example: `  converge projections status
  converge projections status order_summary --json`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := namedTwice("projections status: projection", args); err != nil {
				return err
			}
			db, err := dbOptionsFrom(cmd)
			if err != nil {
				return err
			}
			c.db, c.names, c.out = db, args, cmd.OutOrStdout()
			return c.run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&c.json, "json", false, "print one JSON object per projection and line instead of the table")
	return cmd
}

func (c *projectionsStatusCmd) run(ctx context.Context) error {
	store, closeAll, err := openOpsStore(ctx, c.db)
	if err != nil {
		return err
	}
	defer closeAll()
	stored, err := storedProjections(ctx, store, c.db.Schema, c.names)
	if err != nil {
		return err
	}
	sts, err := collectStatus(ctx, store, stored)
	if err != nil {
		return err
	}
	if c.json {
		enc := json.NewEncoder(c.out)
		for _, s := range sts {
			if err := enc.Encode(s); err != nil {
				return err
			}
		}
		return nil
	}
	return printStatus(c.out, c.db.Schema, sts)
}

// storedProjections lists the projections stored in the schema, only the
// named ones when names are given: a name that is not stored is an error
// listing the known ones.
func storedProjections(ctx context.Context, store *pgstore.Store, schema string, names []string) ([]projections.Stored, error) {
	all, err := projections.ListStored(ctx, store.Rows())
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return all, nil
	}
	byName := map[string]projections.Stored{}
	known := make([]string, 0, len(all))
	for _, s := range all {
		byName[s.Name] = s
		known = append(known, s.Name)
	}
	var out []projections.Stored
	var unknown []string
	for _, n := range names {
		s, ok := byName[n]
		if !ok {
			unknown = append(unknown, strconv.Quote(n))
			continue
		}
		out = append(out, s)
	}
	if len(unknown) > 0 {
		return nil, unknownProjectionError(schema, unknown, known)
	}
	return out, nil
}

func unknownProjectionError(schema string, unknown, known []string) error {
	what := "no projection named " + strings.Join(unknown, ", ")
	if len(known) == 0 {
		return fmt.Errorf("%s: schema %q has no projections yet (wrong --schema, or has no projections.Runner started?)", what, schema)
	}
	return fmt.Errorf("%s in schema %q; known: %s", what, schema, strings.Join(known, ", "))
}

// checkpointsOf returns the checkpoint names of processor name: its
// partitions as last recorded (the runtime's processors table), else the
// checkpoints found under its name.
func checkpointsOf(ctx context.Context, rows feed.Rows, cons []feed.ConsumerInfo, name string) ([]string, error) {
	row, ok, err := rows.Get(ctx, feed.RuntimeNamespace, feed.ProcessorsTable, name, feed.LockNone)
	if err != nil {
		return nil, fmt.Errorf("read processor %q: %w", name, err)
	}
	if ok {
		var rec struct {
			Partitions int `json:"partitions"`
		}
		if json.Unmarshal(row.Value, &rec) == nil && rec.Partitions > 0 {
			out := make([]string, rec.Partitions)
			for i := range out {
				out[i] = feed.PartitionName(name, i, rec.Partitions)
			}
			return out, nil
		}
	}
	var out []string
	for _, c := range cons {
		if c.Name == name || strings.HasPrefix(c.Name, name+"#") {
			out = append(out, c.Name)
		}
	}
	if len(out) == 0 {
		out = []string{name}
	}
	return out, nil
}

// processorState is what the store says about one processor's partitions.
type processorState struct {
	position events.Token
	behind   int64
	halts    []feed.HaltRecord
	leases   []leaseInfo
}

func readProcessor(ctx context.Context, store *pgstore.Store, cons []feed.ConsumerInfo, head events.Token, name string) (processorState, error) {
	var ps processorState
	cps, err := checkpointsOf(ctx, store.Rows(), cons, name)
	if err != nil {
		return ps, err
	}
	byName := map[string]feed.ConsumerInfo{}
	for _, c := range cons {
		byName[c.Name] = c
	}
	ps.leases = []leaseInfo{}
	for i, cp := range cps {
		c := byName[cp] // a missing checkpoint is at the start of the feed
		if i == 0 || c.Position.Before(ps.position) {
			ps.position = c.Position
		}
		// The store names an owner only while its lease runs, by its own
		// clock (this process's may differ).
		if c.Owner != "" {
			ps.leases = append(ps.leases, leaseInfo{Checkpoint: cp, Owner: c.Owner, Until: c.LeaseUntil.UTC()})
		}
		h, ok, err := readHalt(ctx, store.Rows(), cp)
		if err != nil {
			return ps, err
		}
		if ok {
			ps.halts = append(ps.halts, h)
		}
	}
	if ps.behind, err = store.CountBetween(ctx, ps.position, head); err != nil {
		return ps, fmt.Errorf("count events after %q: %w", name, err)
	}
	return ps, nil
}

func readHalt(ctx context.Context, rows feed.Rows, checkpoint string) (feed.HaltRecord, bool, error) {
	row, ok, err := rows.Get(ctx, feed.RuntimeNamespace, feed.HaltsTable, checkpoint, feed.LockNone)
	if err != nil || !ok {
		return feed.HaltRecord{}, false, err
	}
	var h feed.HaltRecord
	if err := json.Unmarshal(row.Value, &h); err != nil {
		return h, false, fmt.Errorf("halt of %q does not decode: %w", checkpoint, err)
	}
	return h, true, nil
}

func collectStatus(ctx context.Context, store *pgstore.Store, stored []projections.Stored) ([]projectionStatus, error) {
	cons, err := store.Consumers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	head, err := store.Head(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]projectionStatus, 0, len(stored))
	for _, s := range stored {
		live, err := readProcessor(ctx, store, cons, head, s.Name)
		if err != nil {
			return nil, err
		}
		st := projectionStatus{
			Name: s.Name, Class: string(s.Class), Generation: s.Generation,
			Position: live.position, Behind: live.behind, State: string(projections.StateRunning),
			Halts: live.halts, Leases: live.leases,
		}
		if len(live.halts) > 0 {
			st.State = string(projections.StateHalted)
		}
		if s.Building != 0 {
			rb, err := readProcessor(ctx, store, cons, head, projections.RebuildProcessor(s.Name, s.Building))
			if err != nil {
				return nil, err
			}
			st.Rebuild = &rebuildInfo{Generation: s.Building, Position: rb.position, Behind: rb.behind, Halts: rb.halts, Leases: rb.leases}
		}
		q, ok, err := projections.ReadRequest(ctx, store.Rows(), s.Name)
		if err != nil {
			return nil, err
		}
		if ok {
			st.Request = &q
		}
		out = append(out, st)
	}
	return out, nil
}

func printStatus(w io.Writer, schema string, sts []projectionStatus) error {
	if len(sts) == 0 {
		_, err := fmt.Fprintf(w, "no projection is stored in schema %q yet (has a projections.Runner started there?)\n", schema)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROJECTION\tCLASS\tGEN\tPOSITION\tBEHIND\tSTATE\tLEASE\tREBUILD")
	for _, s := range sts {
		rebuild := "-"
		if r := s.Rebuild; r != nil {
			rebuild = fmt.Sprintf("gen %d, %d behind", r.Generation, r.Behind)
			if len(r.Halts) > 0 {
				rebuild = fmt.Sprintf("gen %d, halted", r.Generation)
			}
		}
		pos := "start"
		if !s.Position.IsZero() {
			pos = s.Position.String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", s.Name, s.Class, s.Generation, pos, s.Behind, s.State, leaseText(s.Leases), rebuild)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range sts {
		for _, h := range s.Halts {
			fmt.Fprintf(w, "%s halted at event %s (%s, stream %q) after %d attempts: %s\n  fix the cause, then: converge projections resume %s\n",
				s.Name, printable(h.EventID), printable(h.Type), h.StreamID, h.Attempts, printable(h.Reason), s.Name)
		}
		if s.Rebuild != nil {
			for _, h := range s.Rebuild.Halts {
				fmt.Fprintf(w, "%s: the rebuild of generation %d halted at event %s (%s): %s\n  fix the cause, then: converge projections resume %s\n",
					s.Name, s.Rebuild.Generation, printable(h.EventID), printable(h.Type), printable(h.Reason), s.Name)
			}
		}
		if q := s.Request; q != nil {
			fmt.Fprintf(w, "%s: %s requested at %s: %s\n", s.Name, q.Op, q.RequestedAt.Format(time.RFC3339), requestText(*q))
		}
	}
	return nil
}

// leaseText is the LEASE column: the processes holding the partitions'
// leases, or "-" when none does (no application runs the projection).
func leaseText(ls []leaseInfo) string {
	if len(ls) == 0 {
		return "-"
	}
	owners := []string{}
	for _, l := range ls {
		if !slices.Contains(owners, l.Owner) {
			owners = append(owners, l.Owner)
		}
	}
	return printable(strings.Join(owners, ","))
}

// requestText says where a request stands, in words.
func requestText(q projections.Request) string {
	switch q.State {
	case projections.RequestPending:
		if q.Error != "" {
			return "pending (" + printable(q.Error) + ")"
		}
		return "pending: waiting for a running application that has the projection to take it"
	case projections.RequestRunning:
		if q.Op == projections.OpRebuild {
			return fmt.Sprintf("running: building generation %d (taken by %s)", q.Generation, printable(q.Owner))
		}
		return "running (taken by " + printable(q.Owner) + ")"
	case projections.RequestDone:
		if q.Op == projections.OpRebuild {
			return fmt.Sprintf("done: generation %d is active", q.Generation)
		}
		return "done: the checkpoints were moved back to " + tokenText(q.To)
	default:
		return "failed: " + printable(q.Error)
	}
}

func tokenText(t events.Token) string {
	if t.IsZero() {
		return "the start of the feed"
	}
	return t.String()
}

type projectionsResumeCmd struct {
	db   *dbOptions
	name string
	out  io.Writer
}

func newProjectionsResumeCmd() *cobra.Command {
	c := &projectionsResumeCmd{}
	return &cobra.Command{
		Use:   "resume NAME",
		Short: "Clear a projection's halt so every process running it tries the event again",
		Long: `resume deletes the halt records of a projection (and of its rebuild in
progress): every process running it notices within its status poll interval
and delivers the failing event again, with a fresh count of attempts. Fix the
cause first, or it halts again. It reports what was halted.`,
		Example: `  converge projections resume order_summary`,
		Args:    exactlyOne("projection name", "converge projections status"),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := dbOptionsFrom(cmd)
			if err != nil {
				return err
			}
			c.db, c.name, c.out = db, args[0], cmd.OutOrStdout()
			return c.run(cmd.Context())
		},
	}
}

func (c *projectionsResumeCmd) run(ctx context.Context) error {
	store, closeAll, err := openOpsStore(ctx, c.db)
	if err != nil {
		return err
	}
	defer closeAll()
	stored, err := storedProjections(ctx, store, c.db.Schema, []string{c.name})
	if err != nil {
		return err
	}
	cons, err := store.Consumers(ctx)
	if err != nil {
		return fmt.Errorf("list checkpoints: %w", err)
	}
	procs := []string{c.name}
	if b := stored[0].Building; b != 0 {
		procs = append(procs, projections.RebuildProcessor(c.name, b))
	}
	resumed := 0
	for _, proc := range procs {
		cps, err := checkpointsOf(ctx, store.Rows(), cons, proc)
		if err != nil {
			return err
		}
		for _, cp := range cps {
			h, ok, err := readHalt(ctx, store.Rows(), cp)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			if err := store.Rows().Delete(ctx, feed.RuntimeNamespace, feed.HaltsTable, cp); err != nil {
				return fmt.Errorf("resume %s: %w", cp, err)
			}
			resumed++
			fmt.Fprintf(c.out, "resumed %s: it was halted at event %s (%s, stream %q) since %s after %d attempts: %s\n",
				printable(cp), printable(h.EventID), printable(h.Type), h.StreamID, h.At.Format(time.RFC3339), h.Attempts, printable(h.Reason))
		}
	}
	if resumed == 0 {
		_, err := fmt.Fprintf(c.out, "%s is not halted; nothing to resume\n", c.name)
		return err
	}
	_, err = fmt.Fprintln(c.out, "running processes deliver the event again within their status poll interval")
	return err
}

type projectionsRequestCmd struct {
	op   projections.RequestOp
	db   *dbOptions
	name string
	to   string
	// toSet says whether --to was given, empty or not.
	toSet bool
	tok   events.Token
	wait  waitFlags
	out   io.Writer
}

func newProjectionsRequestCmd(op projections.RequestOp) *cobra.Command {
	c := &projectionsRequestCmd{op: op}
	cmd := &cobra.Command{
		Use:  string(op) + " NAME",
		Args: exactlyOne("projection name", "converge projections status"),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := dbOptionsFrom(cmd)
			if err != nil {
				return err
			}
			c.db, c.name, c.out = db, args[0], cmd.OutOrStdout()
			c.toSet = cmd.Flags().Changed("to")
			if err := c.validate(); err != nil {
				return err
			}
			return c.run(cmd.Context())
		},
	}
	common := `

Only a running application has the projection's handlers: this records a
request in --schema that a running projections.Runner with the projection
takes within its status poll interval, and reports that it was accepted.
With --wait it waits, up to --timeout, until the application has done it,
printing its progress. Exit status: 0 accepted (or done with --wait), 1 on
failure, 4 when --wait ran out (the request stays and may still be done).
--timeout counts from the start. Recording takes the projection's state
row, which a unit running or a stalled process may hold: it gets
--timeout, 5s at least, then exits 4 saying the request may not be
recorded (running the command again is safe).`
	switch op {
	case projections.OpRebuild:
		cmd.Short = "Ask the running application to rebuild a projection from the whole feed"
		cmd.Long = `rebuild asks for a rebuild of a projection: the next generation is built from
the start of the feed beside the active one, which readers keep reading
until the new one has caught up and takes its place.` + common
		cmd.Example = `  converge projections rebuild order_summary --wait`
	case projections.OpReset:
		cmd.Short = "Ask the running application to apply a projection's events again from a token"
		cmd.Long = `reset asks for a projection's checkpoints to be moved back to --to (the
start of the feed by default), so the events after it are applied again over
the current rows: for projections whose handlers are upserts. For anything
else use rebuild. Every running application process with the projection
pauses it until the reset is done (its partitions may be shared among them),
and one of them makes it. A --to after the head of the feed (a token from
another database or schema) is refused before anything is recorded.` + common
		// Written by Token.String, so the token shown is one --to takes
		// in any token format.
		cmd.Example = "  converge projections reset order_summary --to " + events.MakeToken(48_213, 1_207).String() + " --wait"
		cmd.Flags().StringVar(&c.to, "to", "", "token to move back to, as printed in X-Consistency-Position (default: the start of the feed)")
	}
	c.wait.register(cmd.Flags(), "wait until the running application has done it")
	return cmd
}

func (c *projectionsRequestCmd) validate() error {
	if err := c.wait.validate(); err != nil {
		return err
	}
	if c.to == "" && c.toSet {
		return emptyFlag("to", "pass a token, or leave --to out to reset to the start of the feed")
	}
	if c.to != "" {
		tok, err := events.ParseToken(c.to)
		if err != nil {
			return fmt.Errorf("--to %q: %w (pass a token as converge prints it, e.g. from X-Consistency-Position)", c.to, err)
		}
		c.tok = tok
	}
	return nil
}

func (c *projectionsRequestCmd) run(ctx context.Context) error {
	store, closeAll, err := openOpsStore(ctx, c.db)
	if err != nil {
		return err
	}
	defer closeAll()
	rctx, cancel, unrecorded, waitLeft := c.wait.recording(ctx)
	defer cancel()
	what := fmt.Sprintf("%s %s", c.op, c.name)
	if _, err := storedProjections(rctx, store, c.db.Schema, []string{c.name}); err != nil {
		return unrecorded(what, err)
	}
	if err := c.checkTo(rctx, store); err != nil {
		return unrecorded(what, err)
	}
	var q projections.Request
	if c.op == projections.OpRebuild {
		q, err = projections.RequestRebuild(rctx, store, c.name)
	} else {
		q, err = projections.RequestReset(rctx, store, c.name, c.tok)
	}
	if err != nil {
		return unrecorded(what, fmt.Errorf("%s %s: %w", c.op, c.name, err))
	}
	what = fmt.Sprintf("%s of %s", c.op, c.name)
	if c.op == projections.OpReset {
		what += " to " + tokenText(c.tok)
	}
	fmt.Fprintf(c.out, "accepted: %s (request %s); a running application with the projection carries it out\n", what, q.ID)
	if !c.wait.wait {
		_, err := fmt.Fprintf(c.out, "follow it with: converge projections status %s\n", c.name)
		return err
	}
	var final projections.Request
	_, err = pollUntil(ctx, c.out, waitLeft(), func(ctx context.Context) (string, bool, error) {
		cur, ok, err := projections.ReadRequest(ctx, store.Rows(), c.name)
		if err != nil {
			return "", false, err
		}
		if !ok || cur.ID != q.ID {
			return "", false, fmt.Errorf("the request was replaced by another one (see `converge projections status %s`)", c.name)
		}
		final = cur
		progress := requestText(cur)
		if cur.State == projections.RequestRunning && cur.Op == projections.OpRebuild {
			if p, err := c.rebuildProgress(ctx, store, cur.Generation); err == nil {
				progress = p
			}
		}
		return progress, cur.Finished(), nil
	})
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return &timedOutError{what: fmt.Sprintf("%s %s: still %s after %s; the request stays and a running application may still carry it out (is one running with the projection?)",
			c.op, c.name, final.State, c.wait.timeout)}
	case err != nil:
		return err
	case final.State == projections.RequestFailed:
		return fmt.Errorf("%s %s failed: %s", c.op, c.name, printable(final.Error))
	}
	return nil
}

// checkTo refuses a reset --to beyond the feed's head: no event of the
// schema has that token (it comes from another database or schema), and
// the running application would only fail the request
// (projections.ErrResetAhead) after it was accepted.
func (c *projectionsRequestCmd) checkTo(ctx context.Context, store *pgstore.Store) error {
	if c.op != projections.OpReset || c.tok.IsZero() {
		return nil
	}
	head, err := store.Head(ctx)
	if err != nil {
		return err
	}
	if !c.tok.After(head) {
		return nil
	}
	at := head.String()
	if head.IsZero() {
		at = "it holds no event yet"
	}
	return fmt.Errorf("reset %s: --to %s is after the head of the feed in schema %q (%s), so no event there has it (a token from another database or schema?): %w; pass a token at or before the head, such as the projection's POSITION in `converge projections status %s`, or leave --to out to reset to the start of the feed",
		c.name, c.tok, c.db.Schema, at, projections.ErrResetAhead, c.name)
}

// rebuildProgress says how far the rebuild of gen is.
func (c *projectionsRequestCmd) rebuildProgress(ctx context.Context, store *pgstore.Store, gen int) (string, error) {
	cons, err := store.Consumers(ctx)
	if err != nil {
		return "", err
	}
	head, err := store.Head(ctx)
	if err != nil {
		return "", err
	}
	rb, err := readProcessor(ctx, store, cons, head, projections.RebuildProcessor(c.name, gen))
	if err != nil {
		return "", err
	}
	if len(rb.halts) > 0 {
		h := rb.halts[0]
		return fmt.Sprintf("running: the rebuild of generation %d is halted at event %s: %s (fix the cause, then: converge projections resume %s)", gen, printable(h.EventID), printable(h.Reason), c.name), nil
	}
	if rb.behind == 0 {
		return fmt.Sprintf("running: generation %d has caught up; switching", gen), nil
	}
	return fmt.Sprintf("running: building generation %d, %d events behind", gen, rb.behind), nil
}

// exactlyOne is the argument rule of a command that acts on one thing,
// saying what it takes and which command lists them.
func exactlyOne(what, list string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != 1 {
			return fmt.Errorf("%s takes one %s, got %d (list them with `%s`)", cmd.CommandPath(), what, len(args), list)
		}
		return nil
	}
}
