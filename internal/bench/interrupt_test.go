package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/bench"
	"github.com/converge-es/converge/internal/pgtest"
)

// cancelAfterLines is the output of a run that the user interrupts
// (Ctrl-C cancels the command's context) once n lines are out.
type cancelAfterLines struct {
	bytes.Buffer
	n      int
	cancel context.CancelFunc
}

func (w *cancelAfterLines) Write(p []byte) (int, error) {
	n, err := w.Buffer.Write(p)
	if bytes.Count(w.Bytes(), []byte("\n")) >= w.n {
		w.cancel()
	}
	return n, err
}

// TestInterruptedRunPrintsOnlyWholeMeasurements: interrupted after a
// random number of its lines, the append and contended scenarios fail
// saying so, and print no line for a measurement the interrupt cut short
// or never let start (such a line would carry a rate of the calls made
// before it, or none, as a result).
func TestInterruptedRunPrintsOnlyWholeMeasurements(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 6})
	st, err := pgstore.New(t.Context(), db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true})
	require.NoError(t, err)
	defer st.Close()

	runs := map[string]func(ctx context.Context, out *cancelAfterLines) error{
		"append": func(ctx context.Context, out *cancelAfterLines) error {
			_, err := bench.Append(ctx, db.Pool, st, &bench.AppendConfig{Writers: []int{1, 2}, Batches: []int{1, 2}, Duration: 60 * time.Millisecond, Rounds: 1}, out)
			return err
		},
		"contended": func(ctx context.Context, out *cancelAfterLines) error {
			_, err := bench.Contended(ctx, db.Pool, st, &bench.ContendedConfig{Writers: []int{1, 2}, Duration: 60 * time.Millisecond, Rounds: 1}, out)
			return err
		},
	}
	for name, run := range runs {
		lines := 1 + rand.IntN(3)
		ctx, cancel := context.WithCancel(t.Context())
		out := &cancelAfterLines{n: lines, cancel: cancel}
		err := run(ctx, out)
		cancel()
		require.ErrorIs(t, err, context.Canceled, "%s interrupted after %d lines", name, lines)
		require.ErrorContains(t, err, "interrupted")
		dec := json.NewDecoder(&out.Buffer)
		printed := 0
		for dec.More() {
			var line map[string]any
			require.NoError(t, dec.Decode(&line))
			require.Positive(t, line["events_per_sec"], "%s line %d: %v", name, printed, line)
			require.Positive(t, line["baseline_per_sec"], "%s line %d: %v", name, printed, line)
			printed++
		}
		require.Equal(t, lines, printed, "%s: no line after the interrupt", name)
	}
}

// TestEveryScenarioSaysItWasInterrupted: cancelled partway (Ctrl-C
// cancels the command's context), every scenario fails saying it was
// interrupted and keeping the interrupt's cause, as append and contended
// do, not naming something else (a timeout that never happened). Each run
// is sized to last well past the cancel.
//
//nolint:tparallel // One scenario at a time: each may open some 30 connections, and six at once took most of the server's 100 from the other packages' tests.
func TestEveryScenarioSaysItWasInterrupted(t *testing.T) {
	t.Parallel()
	seed := time.Now().UnixNano()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 1))
	runs := map[string]func(ctx context.Context, db *pgtest.DB) error{
		"saga": func(ctx context.Context, db *pgtest.DB) error {
			_, err := bench.Saga(ctx, db.Pool, db.Schema, &bench.SagaConfig{Sagas: 2000, Concurrency: 4, Partitions: 2, BaselineDuration: 50 * time.Millisecond}, &bytes.Buffer{})
			return err
		},
		"saga baseline": func(ctx context.Context, db *pgtest.DB) error {
			_, err := bench.Saga(ctx, db.Pool, db.Schema, &bench.SagaConfig{Sagas: 10, BaselineDuration: time.Hour}, &bytes.Buffer{})
			return err
		},
		"propagation": func(ctx context.Context, db *pgtest.DB) error {
			_, err := bench.Propagation(ctx, db.Pool, db.Schema, &bench.PropagationConfig{Rate: 200, Duration: 5 * time.Second}, &bytes.Buffer{})
			return err
		},
		"command": func(ctx context.Context, db *pgtest.DB) error {
			_, err := bench.Command(ctx, db.Pool, db.Schema, &bench.CommandConfig{Rate: 100, Duration: 5 * time.Second}, &bytes.Buffer{})
			return err
		},
		"rebuild": func(ctx context.Context, db *pgtest.DB) error {
			_, err := bench.Rebuild(ctx, db.Pool, db.Schema, &bench.RebuildConfig{Events: 200_000}, &bytes.Buffer{})
			return err
		},
		"parallel": func(ctx context.Context, db *pgtest.DB) error {
			st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema})
			if err != nil {
				return err
			}
			defer st.Close()
			_, err = bench.Parallel(ctx, st, &bench.ParallelConfig{Events: 5000, Partitions: []int{1, 4}}, &bytes.Buffer{})
			return err
		},
	}
	for name, run := range runs {
		after := time.Duration(300+rng.IntN(700)) * time.Millisecond
		t.Run(name, func(t *testing.T) {
			db := pgtest.New(t, &pgtest.Config{MaxConns: 30})
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			timer := time.AfterFunc(after, cancel)
			defer timer.Stop()
			start := time.Now()
			err := run(ctx, db)
			t.Logf("%s cancelled after %s, returned after %s: %v", name, after, time.Since(start).Round(time.Millisecond), err)
			require.ErrorIs(t, err, context.Canceled, "the interrupt's cause is kept")
			require.ErrorContains(t, err, "interrupted", "the error says the run was interrupted")
			require.NotContains(t, err.Error(), "did not complete within", "an interrupt is no timeout")
		})
	}
}
