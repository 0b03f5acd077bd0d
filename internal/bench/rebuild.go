package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/projections"
)

// RebuildConfig configures the rebuild scenario: Events stored events over
// Streams streams, a projection keeping one row per stream, rebuilt beside
// its live generation.
type RebuildConfig struct {
	// Events is how many events are stored and rebuilt. Defaults to
	// 200,000.
	Events int
	// Streams is how many streams (and read-model rows) they spread over.
	// Defaults to 1,000.
	Streams int
	// CommitBatch is the live projection's events per unit. Defaults to
	// 100. The rebuild runs with the runner's default
	// (projections.DefaultRebuildCommitBatch).
	CommitBatch int
	// Rounds is how many times the projection is rebuilt, each rebuild
	// followed by a raw read: the line reports the median of each. One
	// raw read of 200,000 events takes half a second, short enough for a
	// passing stall on a shared machine to move it by half. Defaults to 3.
	Rounds int
}

func (c *RebuildConfig) withDefaults() RebuildConfig {
	out := RebuildConfig{}
	if c != nil {
		out = *c
	}
	if out.Events <= 0 {
		out.Events = 200_000
	}
	if out.Streams <= 0 {
		out.Streams = 1000
	}
	if out.CommitBatch <= 0 {
		out.CommitBatch = 100
	}
	if out.Rounds <= 0 {
		out.Rounds = 3
	}
	return out
}

// RebuildResult is the JSON line of the rebuild scenario.
type RebuildResult struct {
	Scenario string `json:"scenario"`
	Events   int    `json:"events"`
	// EventsPerSec is the rebuild's rate: from Rebuild's call to its
	// return (switched, old generation dropped), beside the live
	// generation. The median over Rounds rebuilds.
	EventsPerSec float64 `json:"events_per_sec"`
	// Baseline names what it is compared with: a raw sequential pgx read
	// of the same events, in pages, in the same run (the median over
	// Rounds reads, each right after a rebuild).
	Baseline       string  `json:"baseline"`
	BaselinePerSec float64 `json:"baseline_per_sec"`
	Ratio          float64 `json:"ratio"`
	// LivePerSec is the live processor's rate catching up on the same
	// events before the rebuild.
	LivePerSec float64 `json:"live_per_sec"`
	// PeakRSSBytes is the process's peak resident set size at the end of
	// the run (VmHWM; 0 where /proc is not available).
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
}

// rebuildDeposit is the scenario's event.
type rebuildDeposit struct {
	Account string `json:"account"`
	Amount  int    `json:"amount"`
}

// Rebuild runs the rebuild scenario in schema (migrated) and writes its
// JSON line to out.
func Rebuild(ctx context.Context, pool *pgxpool.Pool, schema string, cfg *RebuildConfig, out io.Writer) (RebuildResult, error) {
	res, err := runRebuild(ctx, pool, schema, cfg, out)
	return res, interrupted(ctx, err)
}

func runRebuild(ctx context.Context, pool *pgxpool.Pool, schema string, cfg *RebuildConfig, out io.Writer) (RebuildResult, error) {
	c := cfg.withDefaults()
	quiet := slog.New(slog.DiscardHandler)
	reg := events.NewRegistry()
	events.Register[rebuildDeposit](reg, "bench.deposit")
	store, err := pgstore.New(ctx, pool, &pgstore.Config{Schema: schema, Registry: reg, Logger: quiet})
	if err != nil {
		return RebuildResult{}, err
	}
	defer func() { _ = store.Close() }()
	if err := fillRebuild(ctx, store, c); err != nil {
		return RebuildResult{}, err
	}
	// Measure the steady state: autovacuum would analyze the table within
	// a minute of the fill, and the planner picks its feed reads' plans
	// from those statistics (see the pgstore doc).
	if _, err := pool.Exec(ctx, "ANALYZE "+pgx.Identifier{schema, "events"}.Sanitize()); err != nil {
		return RebuildResult{}, fmt.Errorf("bench: analyze: %w", err)
	}
	head, err := store.Head(ctx)
	if err != nil {
		return RebuildResult{}, err
	}

	p := projections.New("bench_totals", nil)
	projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e rebuildDeposit) error {
		t := tx.Table("totals")
		total, _, err := projections.Get[int](ctx, t, e.Account)
		if err != nil {
			return err
		}
		return t.Put(ctx, e.Account, total+e.Amount)
	})
	live := make(chan struct{})
	var liveOnce sync.Once
	runner, err := projections.NewRunner(&projections.RunnerConfig{
		Source:      store,
		Projections: []*projections.Projection{p},
		CommitBatch: c.CommitBatch,
		Subscriber:  &feed.SubscriberConfig{BatchSize: 1000, Logger: quiet},
		Logger:      quiet,
		OnCommitted: func(cp string, pos events.Token) {
			if cp == "bench_totals" && !pos.Before(head) {
				liveOnce.Do(func() { close(live) })
			}
		},
	})
	if err != nil {
		return RebuildResult{}, err
	}
	t0 := time.Now()
	if err := runner.Start(ctx); err != nil {
		return RebuildResult{}, err
	}
	defer func() { _ = runner.Stop(context.WithoutCancel(ctx)) }()
	select {
	case <-live:
	case <-ctx.Done():
		return RebuildResult{}, ctx.Err()
	}
	liveRate := float64(c.Events) / time.Since(t0).Seconds()

	var rebuilds, reads []float64
	for range c.Rounds {
		t1 := time.Now()
		if err := runner.Rebuild(ctx, "bench_totals"); err != nil {
			return RebuildResult{}, fmt.Errorf("bench: rebuild: %w", err)
		}
		rebuilds = append(rebuilds, float64(c.Events)/time.Since(t1).Seconds())
		read, took, err := rawRead(ctx, pool, schema, head)
		if err != nil {
			return RebuildResult{}, err
		}
		if read != c.Events {
			return RebuildResult{}, fmt.Errorf("bench: the raw read found %d events, want %d", read, c.Events)
		}
		reads = append(reads, float64(read)/took.Seconds())
	}
	r := RebuildResult{
		Scenario: "rebuild", Events: c.Events, EventsPerSec: round1(median(rebuilds)),
		Baseline: "raw_read", LivePerSec: round1(liveRate), PeakRSSBytes: peakRSS(),
	}
	r.BaselinePerSec = round1(median(reads))
	r.Ratio = ratio(r.EventsPerSec, r.BaselinePerSec)
	if err := writeLine(ctx, out, r); err != nil {
		return r, err
	}
	return r, nil
}

// fillRebuild appends c.Events deposits over c.Streams streams, 100 per
// append.
func fillRebuild(ctx context.Context, s events.Store, c RebuildConfig) error {
	evs := make([]events.Event, 0, 100)
	for i := 0; i < c.Events; i += 100 {
		evs = evs[:0]
		acct := "acct-" + strconv.Itoa((i/100)%c.Streams)
		for j := i; j < min(i+100, c.Events); j++ {
			evs = append(evs, events.Event{Data: rebuildDeposit{Account: acct, Amount: 1 + j%7}})
		}
		if _, err := s.Append(ctx, acct, events.AnyVersion, evs...); err != nil {
			return fmt.Errorf("bench: fill: %w", err)
		}
	}
	return nil
}

// rawRead reads every event up to head in feed order with plain pgx, in
// keyset pages of 1,000 rows scanned into the columns a consumer needs,
// and returns how many it read and how long it took.
func rawRead(ctx context.Context, pool *pgxpool.Pool, schema string, head events.Token) (int, time.Duration, error) {
	q := fmt.Sprintf(`SELECT sort_key, seq, event_id::text, stream_id, version, type, payload, metadata
FROM %s WHERE (sort_key, seq) > ($1, $2) AND (sort_key, seq) <= ($3, $4) ORDER BY sort_key, seq LIMIT 1000`,
		pgx.Identifier{schema, "events"}.Sanitize())
	var key, seq int64
	n := 0
	t0 := time.Now()
	for {
		rows, err := pool.Query(ctx, q, key, seq, int64(head.Major()), int64(head.Minor()))
		if err != nil {
			return 0, 0, fmt.Errorf("bench: raw read: %w", err)
		}
		page := 0
		for rows.Next() {
			var (
				id, stream, typ string
				version         int64
				payload, meta   []byte
			)
			if err := rows.Scan(&key, &seq, &id, &stream, &version, &typ, &payload, &meta); err != nil {
				rows.Close()
				return 0, 0, fmt.Errorf("bench: raw read: %w", err)
			}
			page++
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return 0, 0, fmt.Errorf("bench: raw read: %w", err)
		}
		n += page
		if page < 1000 {
			return n, time.Since(t0), nil
		}
	}
}

// peakRSS returns the process's peak resident set size in bytes (VmHWM),
// or 0 where /proc is not available.
func peakRSS() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}

// WriteRebuildSummary writes the rebuild result for people.
func WriteRebuildSummary(w io.Writer, r RebuildResult) error {
	_, err := fmt.Fprintf(w, "rebuild: %d events rebuilt beside the live generation at %.0f events/s; raw sequential read %.0f events/s (ratio %s); live catch-up %.0f events/s; peak RSS %.1f MiB\n",
		r.Events, r.EventsPerSec, r.BaselinePerSec, ratioText(r.Ratio, 3), r.LivePerSec, float64(r.PeakRSSBytes)/(1<<20))
	return err
}

// median returns the middle of xs (the mean of the two middle ones for an
// even count); xs is sorted in place.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
