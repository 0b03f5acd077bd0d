package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
)

// AppendConfig configures the append scenario.
type AppendConfig struct {
	// Writers lists the writer counts to run. Defaults to [1, 8].
	Writers []int
	// Batches lists the events-per-append sizes to run. Defaults to [1, 10].
	Batches []int
	// Duration is the measuring time of each side of each pair, split into
	// alternating rounds so drift on a noisy machine hits both sides.
	// Defaults to 3s.
	Duration time.Duration
	// Rounds is how many rounds each pair runs; the side that goes first
	// alternates between rounds. Defaults to 4.
	Rounds int
}

func (c *AppendConfig) withDefaults() AppendConfig {
	out := AppendConfig{}
	if c != nil {
		out = *c
	}
	if len(out.Writers) == 0 {
		out.Writers = []int{1, 8}
	}
	if len(out.Batches) == 0 {
		out.Batches = []int{1, 10}
	}
	if out.Duration <= 0 {
		out.Duration = 3 * time.Second
	}
	if out.Rounds <= 0 {
		out.Rounds = 4
	}
	return out
}

// AppendResult is one JSON line of the append scenario.
type AppendResult struct {
	Scenario     string  `json:"scenario"`
	Writers      int     `json:"writers"`
	Batch        int     `json:"batch"`
	EventsPerSec float64 `json:"events_per_sec"`
	// Baseline names what converge is compared with: raw INSERTs of the
	// same rows at the same concurrency.
	Baseline       string  `json:"baseline"`
	BaselinePerSec float64 `json:"baseline_per_sec"`
	// Ratio is EventsPerSec / BaselinePerSec: the share of raw INSERT
	// throughput converge's appends reach. 1 is parity.
	Ratio float64 `json:"ratio"`
}

// BaselineRawInsert is the append scenario's baseline.
const BaselineRawInsert = "raw_insert"

// Append measures Store.Append against raw pgx INSERTs of the same rows into
// a copy of the events table (same columns, indexes and defaults), at the
// same concurrency, and writes one JSON line per (writers, batch) pair. Both
// sides send event ids as binary UUIDs, as pgstore does.
// store must be migrated and empty-schema'd for the run; pool needs at least
// max(Writers)+2 connections.
func Append(ctx context.Context, pool *pgxpool.Pool, store *pgstore.Store, cfg *AppendConfig, out io.Writer) ([]AppendResult, error) {
	c := cfg.withDefaults()
	baseline, err := createBaseline(ctx, pool, store)
	if err != nil {
		return nil, err
	}
	var results []AppendResult
	run := 0
	for _, w := range c.Writers {
		for _, b := range c.Batches {
			run++
			conv, base, err := measurePair(ctx, c.Rounds, c.Duration, w, b,
				func(ctx context.Context, round, writer int, i int64) error {
					_, err := store.Append(ctx, fmt.Sprintf("bench-%d-%d-%d", run, round, writer), events.AnyVersion, benchEvents(b, i)...)
					return err
				},
				rawInsert(pool, baseline, fmt.Sprint(run), b))
			if err != nil {
				return results, err
			}
			r := AppendResult{
				Scenario: "append", Writers: w, Batch: b,
				EventsPerSec: conv, Baseline: BaselineRawInsert, BaselinePerSec: base, Ratio: ratio(conv, base),
			}
			results = append(results, r)
			if err := writeLine(ctx, out, r); err != nil {
				return results, err
			}
		}
	}
	return results, nil
}

// createBaseline creates the baseline table, a copy of store's events
// table (same columns, indexes and defaults), and returns its name and
// the INSERT that fills it.
func createBaseline(ctx context.Context, pool *pgxpool.Pool, store *pgstore.Store) (string, error) {
	baseline := pgx.Identifier{store.Schema(), "bench_baseline"}.Sanitize()
	if _, err := pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (LIKE %s INCLUDING ALL)`,
		baseline, pgx.Identifier{store.Schema(), "events"}.Sanitize())); err != nil {
		return "", fmt.Errorf("bench: create baseline table: %w", err)
	}
	return baseline, nil
}

// rawInsert returns the baseline side: raw pgx INSERTs of batch rows per
// call into the baseline table, each writer to a stream of its own (tag
// keeps runs apart), with binary UUIDs as pgstore sends them.
func rawInsert(pool *pgxpool.Pool, baseline, tag string, batch int) func(ctx context.Context, round, writer int, i int64) error {
	insert := fmt.Sprintf(`INSERT INTO %s (sort_key, event_id, stream_id, version, type, schema_version, payload, metadata, category)
SELECT 0, e.id, $1, $2 + e.ord, 'bench.event', 1, e.payload, '{}', 'bench'
FROM unnest($3::uuid[], $4::jsonb[]) WITH ORDINALITY AS e(id, payload, ord)`, baseline)
	return func(ctx context.Context, round, writer int, i int64) error {
		// As pgstore sends them: pgtype.UUID encodes in binary, and as
		// text in the exec modes that send text; strings would make pgx
		// try binary, fail and fall back to text on each call.
		ids := make([]pgtype.UUID, batch)
		payloads := make([]string, batch)
		for j := range ids {
			ids[j] = pgtype.UUID{Bytes: uuid.Must(uuid.NewV7()), Valid: true}
			payloads[j] = string(payload(i))
		}
		_, err := pool.Exec(ctx, insert, fmt.Sprintf("base-%s-%d-%d", tag, round, writer), i*int64(batch), ids, payloads)
		return err
	}
}

// benchEvents returns batch events for call i.
func benchEvents(batch int, i int64) []events.Event {
	evs := make([]events.Event, batch)
	for j := range evs {
		evs[j] = events.Event{Data: events.Raw{Type: "bench.event", Payload: payload(i)}}
	}
	return evs
}

// measurePair runs converge's side and the baseline's, each with writers
// goroutines calling it for duration in all, split into rounds whose
// first side alternates, and returns both rates in events/s (batch events
// per call).
func measurePair(ctx context.Context, rounds int, duration time.Duration, writers, batch int,
	convergeSide, baselineSide func(ctx context.Context, round, writer int, i int64) error,
) (convergeRate, baselineRate float64, err error) {
	var convergeN, baseN int64
	var convergeT, baseT time.Duration
	d := duration / time.Duration(rounds)
	for round := range rounds {
		measure := func(fn func(ctx context.Context, round, writer int, i int64) error, n *int64, t *time.Duration, what string) error {
			calls, el, err := drive(ctx, writers, d, func(ctx context.Context, writer int, i int64) error {
				return fn(ctx, round, writer, i)
			})
			if err != nil {
				return fmt.Errorf("bench: %s: %w", what, err)
			}
			*n += calls * int64(batch)
			*t += el
			return nil
		}
		sides := []func() error{
			func() error { return measure(convergeSide, &convergeN, &convergeT, "converge") },
			func() error { return measure(baselineSide, &baseN, &baseT, "baseline insert") },
		}
		// Alternate which side goes first, so whatever the first leaves
		// behind (dirty pages, a checkpoint, autovacuum) does not always
		// land on the same side.
		if round%2 == 1 {
			sides[0], sides[1] = sides[1], sides[0]
		}
		for _, side := range sides {
			if err := side(); err != nil {
				return 0, 0, err
			}
		}
	}
	return round1(float64(convergeN) / convergeT.Seconds()), round1(float64(baseN) / baseT.Seconds()), nil
}

// drive runs fn from `writers` goroutines for d and returns how many calls
// succeeded and how long it took.
func drive(parent context.Context, writers int, d time.Duration, fn func(ctx context.Context, writer int, i int64) error) (int64, time.Duration, error) {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	var (
		n     atomic.Int64
		wg    sync.WaitGroup
		errMu sync.Mutex
		first error
	)
	start := time.Now()
	deadline := start.Add(d)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int64(0); time.Now().Before(deadline); i++ {
				if err := fn(ctx, w, i); err != nil {
					errMu.Lock()
					if first == nil && ctx.Err() == nil {
						first = err
					}
					errMu.Unlock()
					cancel()
					return
				}
				n.Add(1)
			}
		}()
	}
	wg.Wait()
	if first == nil {
		// Interrupted (Ctrl-C): the calls cut off were not counted, so
		// the rate would be no measurement.
		if err := parent.Err(); err != nil {
			first = fmt.Errorf("%w: %w", errInterrupted, err)
		}
	}
	return n.Load(), time.Since(start), first
}

func payload(i int64) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"order_id":"o-%d","amount_cents":%d,"currency":"EUR"}`, i, 1000+i%97))
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
