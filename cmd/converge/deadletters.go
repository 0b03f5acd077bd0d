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
	"unicode"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/projections"
)

// newDeadLettersCmd is `converge dead-letters`: the events any processor
// (projection, saga, command handler) gave up on, and their replay.
func newDeadLettersCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "dead-letters",
		Short: "List and replay events that processors gave up on",
		Long: `dead-letters works on the dead letters stored in --schema: events a
processor (a projection, a saga, a command handler) running with the
dead-letter policy gave up on after its attempts, and moved past.`,
		// A mistyped subcommand is an error, not the help text with status 0.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newDeadLettersListCmd(), newDeadLettersReplayCmd())
	return cmd
}

// deadLetterEntry is one line of `dead-letters list` and its --json form.
type deadLetterEntry struct {
	// ID is what `dead-letters replay` takes: "<checkpoint>/<event id>".
	ID         string          `json:"id"`
	Processor  string          `json:"processor"`
	Checkpoint string          `json:"checkpoint"`
	Event      events.Envelope `json:"event"`
	Reason     string          `json:"reason"`
	Attempts   int             `json:"attempts"`
	At         time.Time       `json:"at"`
	// Replay is the pending or failed replay request, if any.
	Replay *feed.ReplayRequest `json:"replay,omitempty"`
}

type deadLettersListCmd struct {
	db        *dbOptions
	processor string
	// processorSet says whether --processor was given, empty or not.
	processorSet bool
	json         bool
	out          io.Writer
}

func newDeadLettersListCmd() *cobra.Command {
	c := &deadLettersListCmd{}
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List dead letters, with the ID replay takes",
		Long: `list prints every dead letter in --schema (only --processor's with it): its
ID (what replay takes), the event's type, stream and version, when and
after how many attempts it was given up on, why, and any replay request.

A --processor of which --schema holds nothing at all (no record, no
checkpoint, no dead letter: a mistyped name, the wrong --schema) is an
error (exit status 1, nothing on standard output) that lists the
processors stored there, as is an empty one, and a partition's checkpoint
name (NAME#I/N: name the processor, NAME); a known processor without dead
letters lists none, with exit status 0.`,
		Example: `  converge dead-letters list
  converge dead-letters list --processor order_summary --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c.processorSet = cmd.Flags().Changed("processor")
			if err := c.validate(); err != nil {
				return err
			}
			db, err := dbOptionsFrom(cmd)
			if err != nil {
				return err
			}
			c.db, c.out = db, cmd.OutOrStdout()
			return c.run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&c.processor, "processor", "", "only the dead letters of this processor (a projection's name, a saga's, ...)")
	cmd.Flags().BoolVar(&c.json, "json", false, "print one JSON object per dead letter and line instead of the table")
	return cmd
}

// validate refuses a --processor no processor can have: the store's rows
// hold UTF-8 text without control characters, and a name with a NUL in
// it failed deep in the listing, about a row query. An empty one, given,
// is refused rather than read as no filter.
func (c *deadLettersListCmd) validate() error {
	if c.processorSet && c.processor == "" {
		return emptyFlag("processor", "name a processor, or leave --processor out to list every dead letter")
	}
	if !utf8.ValidString(c.processor) || strings.ContainsFunc(c.processor, unicode.IsControl) {
		return fmt.Errorf("--processor %q: a processor name is UTF-8 text without control characters; list every dead letter, with its processor, with `converge dead-letters list`", c.processor)
	}
	return nil
}

func (c *deadLettersListCmd) run(ctx context.Context) error {
	store, closeAll, err := openOpsStore(ctx, c.db)
	if err != nil {
		return err
	}
	defer closeAll()
	var entries []deadLetterEntry
	// A name longer than a row key is no processor's: no row query for it.
	if len(c.processor) <= feed.MaxRowKeyLength {
		if entries, err = listDeadLetters(ctx, store, c.processor); err != nil {
			return err
		}
	}
	if len(entries) == 0 && c.processor != "" {
		// Nothing listed: say so when --processor names no processor the
		// schema knows (a typo reads as "nothing wrong" otherwise),
		// before anything is printed.
		if err := c.checkProcessor(ctx, store); err != nil {
			return err
		}
	}
	if c.json {
		enc := json.NewEncoder(c.out)
		for _, e := range entries {
			if err := enc.Encode(e); err != nil {
				return err
			}
		}
		return nil
	}
	if len(entries) == 0 {
		what := "no dead letters"
		if c.processor != "" {
			what += " of processor " + printable(c.processor)
		}
		_, err := fmt.Fprintf(c.out, "%s in schema %q\n", what, c.db.Schema)
		return err
	}
	tw := tabwriter.NewWriter(c.out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tTYPE\tSTREAM\tVERSION\tAT\tATTEMPTS\tREPLAY\tREASON")
	for _, e := range entries {
		replay := "-"
		if r := e.Replay; r != nil {
			replay = "requested"
			if r.Failed != "" {
				replay = "failed"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", printable(e.ID), printable(e.Event.Type), printable(e.Event.StreamID), e.Event.Version,
			e.At.UTC().Format(time.RFC3339), e.Attempts, replay, printable(oneLine(e.Reason)))
	}
	return tw.Flush()
}

// checkProcessor fails when --processor names a processor of which the
// schema holds nothing (no record, no checkpoint, no dead letter),
// listing the processors it knows.
func (c *deadLettersListCmd) checkProcessor(ctx context.Context, store *pgstore.Store) error {
	known, err := knownProcessors(ctx, store, c.processor)
	if err != nil {
		return err
	}
	if _, found := slices.BinarySearch(known, c.processor); found {
		return nil
	}
	if base := processorOf(c.processor); base != c.processor {
		if _, found := slices.BinarySearch(known, base); found {
			return fmt.Errorf("dead-letters list: %s is the checkpoint of a partition of processor %s: name the processor, --processor %s (each dead letter shows its checkpoint)",
				strconv.Quote(c.processor), strconv.Quote(base), printable(base))
		}
	}
	what := fmt.Sprintf("dead-letters list: no processor named %s in schema %q", strconv.Quote(c.processor), c.db.Schema)
	if len(known) == 0 {
		return fmt.Errorf("%s: it has no processors yet (wrong --schema, or has no processor run there?)", what)
	}
	shown := make([]string, len(known))
	for i, k := range known {
		shown[i] = printable(k)
	}
	return fmt.Errorf("%s; known: %s", what, strings.Join(shown, ", "))
}

// knownProcessors returns, sorted, the names of the processors the store
// knows: by their records (feed.ProcessorPartitions), by their
// checkpoints (a partition's is named after its processor), and by their
// dead letters (whose IDs start with their checkpoint). When want is
// known by a record or a checkpoint it returns want alone, without
// reading the dead letters, which can be many.
func knownProcessors(ctx context.Context, store *pgstore.Store, want string) ([]string, error) {
	parts, err := feed.ProcessorPartitions(ctx, store.Rows())
	if err != nil {
		return nil, fmt.Errorf("list processors: %w", err)
	}
	cons, err := store.Consumers(ctx)
	if err != nil {
		return nil, fmt.Errorf("list checkpoints: %w", err)
	}
	known := make([]string, 0, len(parts)+len(cons))
	for name := range parts {
		known = append(known, name)
	}
	for _, cn := range cons {
		known = append(known, processorOf(cn.Name))
	}
	if slices.Contains(known, want) {
		// Known by its record or a checkpoint: the dead letters, which
		// can be many, need not be read.
		return []string{want}, nil
	}
	if err := eachRow(ctx, store.Rows(), feed.DeadLettersTable, "", func(r feed.Row) error {
		if i := strings.LastIndexByte(r.Key, '/'); i > 0 {
			known = append(known, processorOf(r.Key[:i]))
		}
		return nil
	}); err != nil {
		return nil, err
	}
	slices.Sort(known)
	return slices.Compact(known), nil
}

// processorOf is the name of the processor a checkpoint belongs to: the
// processor's own, or one of its partitions'.
func processorOf(checkpoint string) string {
	if name, _, _, ok := feed.ParsePartitionName(checkpoint); ok {
		return name
	}
	return checkpoint
}

// oneLine cuts s to its first line, for the table's last column; the
// cause is at the end of a wrapped error, so the line is kept whole
// (--json has the rest).
func oneLine(s string) string {
	if first, _, cut := strings.Cut(s, "\n"); cut {
		return first + " …"
	}
	return s
}

// listDeadLetters reads every dead letter, page by page, keeping those of
// processor when it is not empty, with their replay requests.
func listDeadLetters(ctx context.Context, store *pgstore.Store, processor string) ([]deadLetterEntry, error) {
	replays := map[string]feed.ReplayRequest{}
	if err := eachRow(ctx, store.Rows(), feed.ReplaysTable, processor, func(r feed.Row) error {
		var q feed.ReplayRequest
		if err := json.Unmarshal(r.Value, &q); err != nil {
			return fmt.Errorf("replay request %q does not decode: %w", r.Key, err)
		}
		replays[r.Key] = q
		return nil
	}); err != nil {
		return nil, err
	}
	var out []deadLetterEntry
	err := eachRow(ctx, store.Rows(), feed.DeadLettersTable, processor, func(r feed.Row) error {
		var rec feed.DeadLetterRecord
		if err := json.Unmarshal(r.Value, &rec); err != nil {
			return fmt.Errorf("dead letter %q does not decode: %w", r.Key, err)
		}
		// The last '#' starts a partition's suffix: an older build's
		// processor name may hold '#' itself.
		proc := processorOf(rec.Checkpoint)
		if processor != "" && proc != processor {
			return nil // a processor whose name merely starts with it
		}
		e := deadLetterEntry{ID: r.Key, Processor: proc, Checkpoint: rec.Checkpoint, Event: rec.Event, Reason: rec.Reason, Attempts: rec.Attempts, At: rec.At}
		if q, ok := replays[r.Key]; ok {
			e.Replay = &q
		}
		out = append(out, e)
		return nil
	})
	return out, err
}

// eachRow calls fn for every row of a runtime table whose key starts with
// prefix, in key order.
func eachRow(ctx context.Context, rows feed.Rows, table, prefix string, fn func(feed.Row) error) error {
	q := feed.RowQuery{Prefix: prefix}
	for {
		page, err := rows.List(ctx, feed.RuntimeNamespace, table, q)
		if err != nil {
			return fmt.Errorf("list %s: %w", table, err)
		}
		for _, r := range page {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(page) < feed.DefaultRowLimit {
			return nil
		}
		q.After = page[len(page)-1].Key
	}
}

type deadLettersReplayCmd struct {
	db   *dbOptions
	ids  []string
	wait waitFlags
	out  io.Writer
}

func newDeadLettersReplayCmd() *cobra.Command {
	c := &deadLettersReplayCmd{}
	cmd := &cobra.Command{
		Use:   "replay ID...",
		Short: "Ask the running processor to apply dead letters again",
		Long: `replay asks for dead letters to be applied again, each by its ID as list
prints it ("<checkpoint>/<event id>"). Only a running application has the
handler: this records a replay request that the process holding the dead
letter's partition carries out, applying the event and deleting the dead
letter together; it reports that each request was accepted. With --wait it
waits, up to --timeout, until each is replayed, or failed again (the dead
letter then stays, with the new error). A request also goes without a
replay when a projection reset drops it with its dead letter (the reset
applies the event again): --wait then says so, and whether the event was
dead-lettered again, rather than "replayed". An ID given twice is
refused. Exit status: 0 accepted (or all replayed with --wait), 1 on
failure (or a replay --wait cannot confirm), 4 when --wait ran out.
--timeout counts from the start. Recording takes the dead letter's row,
which a unit running or a stalled process may hold: it gets --timeout, 5s
at least, then exits 4 saying the request may not be recorded (running
the command again is safe); the requests recorded before it stay.`,
		Example: `  converge dead-letters replay order_summary/0b6c2c4e-4f4e-4a56-9d0f-2d0f0c9b7a11 --wait`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return errors.New("dead-letters replay takes one or more dead letter IDs (list them with `converge dead-letters list`)")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := dbOptionsFrom(cmd)
			if err != nil {
				return err
			}
			c.db, c.ids, c.out = db, args, cmd.OutOrStdout()
			if err := c.validate(); err != nil {
				return err
			}
			return c.run(cmd.Context())
		},
	}
	c.wait.register(cmd.Flags(), "wait until the running processors have replayed them")
	return cmd
}

func (c *deadLettersReplayCmd) validate() error {
	if err := namedTwice("dead-letters replay: dead letter ID", c.ids); err != nil {
		return err
	}
	for _, id := range c.ids {
		if i := strings.LastIndexByte(id, '/'); i <= 0 || i == len(id)-1 {
			return fmt.Errorf("dead letter ID %q: use <checkpoint>/<event id>, as `converge dead-letters list` prints it", id)
		}
	}
	return c.wait.validate()
}

func (c *deadLettersReplayCmd) run(ctx context.Context) error {
	store, closeAll, err := openOpsStore(ctx, c.db)
	if err != nil {
		return err
	}
	defer closeAll()
	rctx, cancel, unrecorded, waitLeft := c.wait.recording(ctx)
	defer cancel()
	var failed, unconfirmed []string
	// The dead letters as they were when their replay was asked for: a
	// request that is gone says "replayed" only if the dead letter went
	// with it and nothing else removed both.
	asked := map[string]feed.DeadLetterRecord{}
	for _, id := range c.ids {
		rec, _, err := readDeadLetter(rctx, store.Rows(), id)
		if err != nil {
			return unrecorded("dead-letters replay "+printable(id), err)
		}
		if _, err := feed.RequestReplay(rctx, store.Rows(), id); err != nil {
			if errors.Is(err, feed.ErrNoDeadLetter) {
				fmt.Fprintf(c.out, "%s: no such dead letter in schema %q (list them with `converge dead-letters list`)\n", printable(id), c.db.Schema)
				failed = append(failed, id)
				continue
			}
			return unrecorded("dead-letters replay "+printable(id), err)
		}
		asked[id] = rec
		fmt.Fprintf(c.out, "%s: replay accepted; the process holding its partition replays it\n", printable(id))
	}
	if c.wait.wait && len(asked) > 0 {
		open := map[string]bool{}
		for id := range asked {
			open[id] = true
		}
		_, err := pollUntil(ctx, c.out, waitLeft(), func(ctx context.Context) (string, bool, error) {
			var lines []string
			for _, id := range c.ids {
				if !open[id] {
					continue
				}
				q, ok, err := feed.ReadReplay(ctx, store.Rows(), id)
				if err != nil {
					return "", false, err
				}
				switch {
				case !ok:
					line, replayed, err := c.outcome(ctx, store, id, asked[id])
					if err != nil {
						return "", false, err
					}
					delete(open, id)
					lines = append(lines, line)
					switch replayed {
					case outcomeNotReplayed:
						failed = append(failed, id)
					case outcomeUnknown:
						unconfirmed = append(unconfirmed, id)
					}
				case q.Failed != "":
					delete(open, id)
					failed = append(failed, id)
					lines = append(lines, printable(id)+": replay failed, it stays a dead letter: "+q.Failed)
				}
			}
			return strings.Join(lines, "\n"), len(open) == 0, nil
		})
		if errors.Is(err, context.DeadlineExceeded) {
			return &timedOutError{what: fmt.Sprintf("dead-letters replay: %d not replayed after %s; the requests stay and a running processor may still replay them (is the application running?)", len(open), c.wait.timeout)}
		}
		if err != nil {
			return err
		}
	}
	var msgs []string
	if len(failed) > 0 {
		msgs = append(msgs, fmt.Sprintf("%d of %d failed: %s", len(failed), len(c.ids), printableList(failed)))
	}
	if len(unconfirmed) > 0 {
		msgs = append(msgs, fmt.Sprintf("%d of %d not confirmed replayed (see above): %s", len(unconfirmed), len(c.ids), printableList(unconfirmed)))
	}
	if len(msgs) > 0 {
		return errors.New("dead-letters replay: " + strings.Join(msgs, "; "))
	}
	return nil
}

// The outcomes of a replay whose request is gone.
const (
	outcomeReplayed    = iota // the dead letter went with the request
	outcomeNotReplayed        // the dead letter is still, or again, there
	outcomeUnknown            // a reset dropped both: its event is applied again, not replayed
)

// outcome says what became of the replay of dead letter id, whose request
// is gone: the processor deletes the request with the dead letter when the
// replay succeeds, but a projection reset deletes both too (the events
// after its token are applied again, and one that fails again is a dead
// letter again, under the same ID). was is the dead letter when its replay
// was asked for. It returns the line to print and the outcome.
func (c *deadLettersReplayCmd) outcome(ctx context.Context, store *pgstore.Store, id string, was feed.DeadLetterRecord) (string, int, error) {
	now, present, err := readDeadLetter(ctx, store.Rows(), id)
	if err != nil {
		return "", 0, err
	}
	switch {
	case present && !now.At.Equal(was.At):
		return fmt.Sprintf("%s: not replayed: its request was dropped (by a projection reset, say) and the event was dead-lettered again at %s after %d attempts: %s",
			printable(id), now.At.UTC().Format(time.RFC3339), now.Attempts, printable(oneLine(now.Reason))), outcomeNotReplayed, nil
	case present:
		return fmt.Sprintf("%s: not replayed: its request was withdrawn and it is still a dead letter (ask again to replay it)", printable(id)), outcomeNotReplayed, nil
	}
	// Gone with its request: replayed, unless a reset of the projection
	// since the event was dead-lettered dropped both.
	proc := processorOf(was.Checkpoint)
	q, ok, err := projections.ReadRequest(ctx, store.Rows(), proc)
	if err != nil {
		return "", 0, err
	}
	if ok && q.Op == projections.OpReset && (q.State == projections.RequestRunning || q.State == projections.RequestDone) &&
		!q.UpdatedAt.Before(was.At) && was.Event.Token.After(q.To) {
		return fmt.Sprintf("%s: not confirmed replayed: the reset of projection %s to %s (%s at %s) dropped it with its request, and applies its event again; if that fails, it is a dead letter again (see `converge dead-letters list --processor %s`)",
			printable(id), printable(proc), tokenText(q.To), q.State, q.UpdatedAt.UTC().Format(time.RFC3339), printable(proc)), outcomeUnknown, nil
	}
	return printable(id) + ": replayed", outcomeReplayed, nil
}

// readDeadLetter reads the dead letter stored under id, if any.
func readDeadLetter(ctx context.Context, rows feed.Rows, id string) (feed.DeadLetterRecord, bool, error) {
	var rec feed.DeadLetterRecord
	// An ID no dead letter can have is not an error here: RequestReplay
	// reports it as one more unknown ID.
	if canBe := feed.ValidateRowAddress(feed.RuntimeNamespace, feed.DeadLettersTable, id) == nil; !canBe {
		return rec, false, nil
	}
	row, ok, err := rows.Get(ctx, feed.RuntimeNamespace, feed.DeadLettersTable, id, feed.LockNone)
	if err != nil || !ok {
		return rec, false, err
	}
	if err := json.Unmarshal(row.Value, &rec); err != nil {
		return rec, false, fmt.Errorf("dead letter %q does not decode: %w", id, err)
	}
	return rec, true, nil
}

// printableList is ids, each printable, separated by commas.
func printableList(ids []string) string {
	shown := make([]string, len(ids))
	for i, id := range ids {
		shown[i] = printable(id)
	}
	return strings.Join(shown, ", ")
}
