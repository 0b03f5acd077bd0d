package bench

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
)

// ContendedConfig configures the contended scenario: every writer appends
// one event at a time to the same stream.
type ContendedConfig struct {
	// Writers lists the writer counts to run. Defaults to [8].
	Writers []int
	// Duration is the measuring time of each side of each pair, split into
	// alternating rounds. Defaults to 3s.
	Duration time.Duration
	// Rounds is how many rounds each pair runs. Defaults to 4.
	Rounds int
}

func (c *ContendedConfig) withDefaults() ContendedConfig {
	out := ContendedConfig{}
	if c != nil {
		out = *c
	}
	if len(out.Writers) == 0 {
		out.Writers = []int{8}
	}
	if out.Duration <= 0 {
		out.Duration = 3 * time.Second
	}
	if out.Rounds <= 0 {
		out.Rounds = 4
	}
	return out
}

// ContendedResult is one JSON line of the contended scenario.
type ContendedResult struct {
	Scenario string `json:"scenario"`
	// Method is MethodAppend or MethodAppendTx.
	Method       string  `json:"method"`
	Writers      int     `json:"writers"`
	EventsPerSec float64 `json:"events_per_sec"`
	// Baseline is BaselineRawInsert: the same rows inserted raw, each
	// writer into a stream of its own (a raw INSERT has no stream head to
	// agree on).
	Baseline       string  `json:"baseline"`
	BaselinePerSec float64 `json:"baseline_per_sec"`
	// Ratio is EventsPerSec / BaselinePerSec: how much of the raw rate
	// appends keep when every writer appends to one stream.
	Ratio float64 `json:"ratio"`
}

// The contended scenario's methods.
const (
	// MethodAppend appends with Store.Append.
	MethodAppend = "append"
	// MethodAppendTx appends with Store.AppendTx, each in a transaction of
	// its own that commits.
	MethodAppendTx = "append_tx"
)

// Contended measures appends of one event by Writers writers to one
// stream, by Append and by AppendTx, each against raw INSERTs of the same
// rows at the same concurrency, and writes one JSON line per method and
// writer count. store must be migrated; pool needs max(Writers)+2
// connections.
func Contended(ctx context.Context, pool *pgxpool.Pool, store *pgstore.Store, cfg *ContendedConfig, out io.Writer) ([]ContendedResult, error) {
	c := cfg.withDefaults()
	baseline, err := createBaseline(ctx, pool, store)
	if err != nil {
		return nil, err
	}
	var results []ContendedResult
	run := 0
	for _, w := range c.Writers {
		for _, method := range []string{MethodAppend, MethodAppendTx} {
			run++
			conv, base, err := measurePair(ctx, c.Rounds, c.Duration, w, 1,
				func(ctx context.Context, round, _ int, i int64) error {
					stream := fmt.Sprintf("bench_one-%d-%d", run, round)
					if method == MethodAppend {
						_, err := store.Append(ctx, stream, events.AnyVersion, benchEvents(1, i)...)
						return err
					}
					tx, err := pool.Begin(ctx)
					if err != nil {
						return err
					}
					defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
					if _, err := store.AppendTx(ctx, tx, stream, events.AnyVersion, benchEvents(1, i)...); err != nil {
						return err
					}
					return tx.Commit(ctx)
				},
				rawInsert(pool, baseline, fmt.Sprint("one-", run), 1))
			if err != nil {
				return results, err
			}
			r := ContendedResult{
				Scenario: "contended", Method: method, Writers: w,
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
