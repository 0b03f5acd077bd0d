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
