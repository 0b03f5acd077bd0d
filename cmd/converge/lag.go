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
	"time"

	"github.com/spf13/cobra"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
)

// exitBreached is the exit status `converge lag --fail-on-breach` asks for
// when a projection breaches its SLA, so scripts can tell a breach (3) from
// a failure to measure (1); main exits with breachError.ExitCode.
const exitBreached = 3

// lagCmd is `converge lag`: it measures how far projections are behind the
// event store, once or repeatedly, as a table or as JSON lines.
type lagCmd struct {
	db *dbOptions
	// sla is the SLA of projections named without one. Defaults to
	// lag.UserFacingSLA.
	sla time.Duration
	// json prints one JSON object per projection instead of the table.
	json bool
	// watch repeats the measurement at this interval until interrupted;
	// 0 measures once.
	watch time.Duration
	// failOnBreach makes a breach an error (exit status 3).
	failOnBreach bool
	// args are the positional NAME or NAME=SLA arguments; targets is what
	// validate makes of them.
	args    []string
	targets []lag.Target
	out     io.Writer
	// errOut receives the failures --watch carries on after.
	errOut io.Writer
}

func newLagCmd() *cobra.Command {
	c := &lagCmd{}
	cmd := &cobra.Command{
		Use:   "lag [PROJECTION[=SLA]...]",
		Short: "Show how far projections are behind the event store, against their SLAs",
		Long: `lag reports, for each projection (feed consumer), its checkpoint, how many
events it is behind (BEHIND), how long its oldest unprocessed event has been
waiting (TIME LAG), how long ago its runner was last heard of (HEARTBEAT),
its SLA and whether it breaches it. A projection breaches when its time lag
exceeds the SLA, or when it has unprocessed events and its heartbeat is older
than the lease TTL (5s): no runner is working them off.

Without arguments every consumer in --schema is reported with --sla. Name
projections to report only those, each with --sla or its own SLA (a name
without a checkpoint in --schema is an error that lists the known ones, as
is a partition's checkpoint name, NAME#I/N: name the processor, NAME;
NAME=SLA splits at the last '=', so a name holding '=' is given with its SLA):

  converge lag order_summary sales_report=30s

A processor split into partitions (a projection's Partitions, the sagas'
and the command handlers' processors) is one line under its name, at its
slowest partition; the checkpoints an earlier partition count left behind
no longer move and are not listed.

A line under the table says when an open transaction has held delivery
back (the read horizon) for a second or more.

lag exits 0 whether or not a projection breaches; with --fail-on-breach a
breach makes it fail, for scripts and health checks.`,
		Example: `  converge lag
  converge lag --sla 30s --json
  converge lag order_summary=2s sales_report=30s --watch 5s
  converge lag --fail-on-breach || page-someone`,
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := dbOptionsFrom(cmd)
			if err != nil {
				return err
			}
			c.db = db
			c.args = args
			c.out = cmd.OutOrStdout()
			c.errOut = cmd.ErrOrStderr()
			if err := c.validate(); err != nil {
				return err
			}
			return c.run(cmd.Context())
		},
	}
	cmd.Flags().DurationVar(&c.sla, "sla", lag.UserFacingSLA, "SLA (maximum time lag) of projections named without their own")
	cmd.Flags().BoolVar(&c.json, "json", false, "print one JSON object per projection and line instead of the table")
	cmd.Flags().DurationVar(&c.watch, "watch", 0, "measure again at this interval until interrupted (e.g. 5s)")
	cmd.Flags().BoolVar(&c.failOnBreach, "fail-on-breach", false, "exit non-zero when a projection breaches its SLA")
	return cmd
}

// minLagInterval is the shortest interval between lag passes (lag --watch,
// serve --interval): each pass reads every consumer's checkpoint and the
// feed's head, and a shorter one only loads the machine and the database
// (serve at 1ns spun a core) without telling an operator anything new.
const minLagInterval = 100 * time.Millisecond

func (c *lagCmd) validate() error {
	switch {
	case c.db == nil:
		return errors.New("lag: no database options")
	case c.out == nil || c.errOut == nil:
		return errors.New("lag: no output")
	case c.sla <= 0:
		return fmt.Errorf("--sla %s: use a positive duration such as 2s", c.sla)
	case c.watch < 0 || c.watch > 0 && c.watch < minLagInterval:
		return fmt.Errorf("--watch %s: use an interval of at least %s, such as 5s, or leave it out to measure once", c.watch, minLagInterval)
	case c.watch > 0 && c.failOnBreach:
		return errors.New("--fail-on-breach needs a single measurement: drop --watch")
	}
	c.targets = c.targets[:0]
	seen := map[string]bool{}
	for _, a := range c.args {
		// At the last '=': an SLA holds none, a name stored by an older
		// build may.
		name, slaText, hasSLA := a, "", false
		if i := strings.LastIndexByte(a, '='); i >= 0 {
			name, slaText, hasSLA = a[:i], a[i+1:], true
		}
		t := lag.Target{Name: name, SLA: c.sla}
		if name == "" {
			return fmt.Errorf("projection %q: the name is empty (use NAME or NAME=SLA, such as orders=2s)", a)
		}
		if seen[name] {
			return fmt.Errorf("projection %q is named twice", name)
		}
		seen[name] = true
		if hasSLA {
			d, err := time.ParseDuration(slaText)
			if err != nil || d <= 0 {
				return fmt.Errorf("projection %q: SLA %q: use a positive duration such as 2s or 30s", name, slaText)
			}
			t.SLA = d
		}
		c.targets = append(c.targets, t)
	}
	return c.db.validate()
}

func (c *lagCmd) run(ctx context.Context) error {
	pool, err := c.db.openPool(ctx)
	if err != nil {
		return err
	}
	defer pool.Close()
	store, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: c.db.Schema, DisableListen: true})
	if err != nil {
		return err
	}
	defer store.Close()
	if err := c.checkNames(ctx, store, store.Rows()); err != nil {
		return err
	}
	mon, err := lag.NewMonitor(store, &lag.Config{
		Projections: c.targets,
		DefaultSLA:  c.sla,
		// The output says it all; breach log lines would repeat it.
		Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		return err
	}

	if c.watch == 0 {
		reports, err := mon.Check(ctx)
		if err != nil {
			return err
		}
		if err := c.print(reports); err != nil {
			return err
		}
		return c.judge(reports)
	}

	ticker := time.NewTicker(c.watch)
	defer ticker.Stop()
	printed := false
	for {
		reports, err := mon.Check(ctx)
		if ctx.Err() != nil {
			return nil // interrupted: the normal end of --watch
		}
		if err != nil {
			// Watching outlives a database restart: say so and go on.
			fmt.Fprintf(c.errOut, "converge: %v (trying again in %s)\n", err, c.watch)
		} else {
			if printed && !c.json {
				if _, err := fmt.Fprintln(c.out); err != nil {
					return err
				}
			}
			if err := c.print(reports); err != nil {
				return err
			}
			printed = true
		}
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
		}
	}
}

// checkNames fails when a named projection has no checkpoint in the
// schema: such a name is far more often a typo or the wrong --schema than
// a projection that never ran, and reporting it as "behind by everything"
// would page someone for a typo. A processor split into partitions is
// known by its own name (its record) as well as by its partitions'.
func (c *lagCmd) checkNames(ctx context.Context, store feed.Inspector, rows feed.Rows) error {
	if len(c.targets) == 0 {
		return nil
	}
	consumers, err := store.Consumers(ctx)
	if err != nil {
		return fmt.Errorf("lag: list projections: %w", err)
	}
	processors, err := feed.ProcessorPartitions(ctx, rows)
	if err != nil {
		return fmt.Errorf("lag: list processors: %w", err)
	}
	known := make([]string, 0, len(consumers)+len(processors))
	for _, cons := range consumers {
		known = append(known, recordedProcessorOf(cons.Name, processors))
	}
	for name := range processors {
		known = append(known, name)
	}
	slices.Sort(known)
	known = slices.Compact(known)
	var unknown []string
	for _, t := range c.targets {
		if base := recordedProcessorOf(t.Name, processors); base != t.Name {
			// Reported as one line under its processor's name: a single
			// partition's line would not be what lag reports (and one an
			// earlier partition count left behind never moves).
			return fmt.Errorf("lag: %s is the checkpoint of a partition of processor %s: name the processor, %s, which lag reports as one line, at its slowest partition",
				strconv.Quote(t.Name), strconv.Quote(base), base)
		}
		if _, found := slices.BinarySearch(known, t.Name); !found {
			unknown = append(unknown, strconv.Quote(t.Name))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	what := "no projection named " + strings.Join(unknown, ", ")
	if len(known) == 0 {
		return fmt.Errorf("lag: %s: schema %q has no projections yet (wrong --schema, or has no projection runner started?)", what, c.db.Schema)
	}
	return fmt.Errorf("lag: %s in schema %q; known: %s", what, c.db.Schema, strings.Join(known, ", "))
}

// recordedProcessorOf is the processor a partition's checkpoint belongs
// to when the store keeps that processor's record (processors, from
// feed.ProcessorPartitions), which lag reports under its name; else
// checkpoint itself.
func recordedProcessorOf(checkpoint string, processors map[string]int) string {
	if base, _, _, ok := feed.ParsePartitionName(checkpoint); ok {
		if _, recorded := processors[base]; recorded {
			return base
		}
	}
	return checkpoint
}

// print writes one measurement: the table, or a JSON line per projection.
func (c *lagCmd) print(reports []lag.Report) error {
	if c.json {
		enc := json.NewEncoder(c.out)
		for _, r := range reports {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	}
	if err := lag.Table(c.out, reports); err != nil {
		return err
	}
	if len(reports) == 0 {
		_, err := fmt.Fprintf(c.out, "no projection has a checkpoint in schema %q yet\n", c.db.Schema)
		return err
	}
	return nil
}

// judge returns a breachError when --fail-on-breach is set and a projection
// breaches its SLA.
func (c *lagCmd) judge(reports []lag.Report) error {
	if !c.failOnBreach {
		return nil
	}
	var names []string
	for _, r := range reports {
		if r.Breached {
			names = append(names, r.Name)
		}
	}
	if len(names) == 0 {
		return nil
	}
	return &breachError{names: names}
}

// breachError is what --fail-on-breach fails with. ExitCode tells main the
// status to exit with.
type breachError struct{ names []string }

func (e *breachError) Error() string {
	if len(e.names) == 1 {
		return fmt.Sprintf("lag: projection %s breaches its SLA", e.names[0])
	}
	return fmt.Sprintf("lag: %d projections breach their SLA: %s", len(e.names), strings.Join(e.names, ", "))
}

// ExitCode is the process exit status for this error.
func (e *breachError) ExitCode() int { return exitBreached }
