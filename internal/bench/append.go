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
// same concurrency, and writes one JSON line per (writers, batch) pair.
// store must be migrated and empty-schema'd for the run; pool needs at least
// max(Writers)+2 connections.
func Append(ctx context.Context, pool *pgxpool.Pool, store *pgstore.Store, cfg *AppendConfig, out io.Writer) ([]AppendResult, error) {
	c := cfg.withDefaults()
	baseline := pgx.Identifier{store.Schema(), "bench_baseline"}.Sanitize()
	if _, err := pool.Exec(ctx, fmt.Sprintf(`CREATE TABLE IF NOT EXISTS %s (LIKE %s INCLUDING ALL)`,
		baseline, pgx.Identifier{store.Schema(), "events"}.Sanitize())); err != nil {
		return nil, fmt.Errorf("bench: create baseline table: %w", err)
	}
	insert := fmt.Sprintf(`INSERT INTO %s (sort_key, event_id, stream_id, version, type, schema_version, payload, metadata, category)
SELECT 0, e.id, $1, $2 + e.ord, 'bench.event', 1, e.payload, '{}', 'bench'
FROM unnest($3::uuid[], $4::jsonb[]) WITH ORDINALITY AS e(id, payload, ord)`, baseline)

	var results []AppendResult
	run := 0
	for _, w := range c.Writers {
		for _, b := range c.Batches {
			run++
			var convergeN, baseN int64
			var convergeT, baseT time.Duration
			for round := range c.Rounds {
				d := c.Duration / time.Duration(c.Rounds)
				convergeSide := func() error {
					n, el, err := drive(ctx, w, d, func(ctx context.Context, writer int, i int64) error {
						evs := make([]events.Event, b)
						for j := range evs {
							evs[j] = events.Event{Data: events.Raw{Type: "bench.event", Payload: payload(i)}}
						}
						_, err := store.Append(ctx, fmt.Sprintf("bench-%d-%d-%d", run, round, writer), events.AnyVersion, evs...)
						return err
					})
					if err != nil {
						return fmt.Errorf("bench: converge append: %w", err)
					}
					convergeN += n * int64(b)
					convergeT += el
					return nil
				}
				baselineSide := func() error {
					n, el, err := drive(ctx, w, d, func(ctx context.Context, writer int, i int64) error {
						ids := make([]string, b)
						payloads := make([]string, b)
						for j := range ids {
							ids[j] = uuid.Must(uuid.NewV7()).String()
							payloads[j] = string(payload(i))
						}
						_, err := pool.Exec(ctx, insert, fmt.Sprintf("base-%d-%d-%d", run, round, writer), i*int64(b), ids, payloads)
						return err
					})
					if err != nil {
						return fmt.Errorf("bench: baseline insert: %w", err)
					}
					baseN += n * int64(b)
					baseT += el
					return nil
				}
				// Alternate which side goes first, so whatever the first
				// leaves behind (dirty pages, a checkpoint, autovacuum) does
				// not always land on the same side.
				sides := []func() error{convergeSide, baselineSide}
				if round%2 == 1 {
					sides[0], sides[1] = sides[1], sides[0]
				}
				for _, side := range sides {
					if err := side(); err != nil {
						return results, err
					}
				}
			}
			r := AppendResult{
				Scenario:       "append",
				Writers:        w,
				Batch:          b,
				EventsPerSec:   round1(float64(convergeN) / convergeT.Seconds()),
				Baseline:       BaselineRawInsert,
				BaselinePerSec: round1(float64(baseN) / baseT.Seconds()),
			}
			r.Ratio = ratio(r.EventsPerSec, r.BaselinePerSec)
			results = append(results, r)
			if err := json.NewEncoder(out).Encode(r); err != nil {
				return results, err
			}
		}
	}
	return results, nil
}

// drive runs fn from `writers` goroutines for d and returns how many calls
// succeeded and how long it took.
func drive(ctx context.Context, writers int, d time.Duration, fn func(ctx context.Context, writer int, i int64) error) (int64, time.Duration, error) {
	ctx, cancel := context.WithCancel(ctx)
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
	return n.Load(), time.Since(start), first
}

func payload(i int64) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"order_id":"o-%d","amount_cents":%d,"currency":"EUR"}`, i, 1000+i%97))
}

func round1(f float64) float64 { return float64(int64(f*10+0.5)) / 10 }
