package command_test

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestResultFitsItsRowWhateverTheLimits: a command's result row holds at
// most events.DefaultMaxPayloadBytes whatever the store's Limits, and a
// result that does not fit fails the delivery for ever. With the limits
// raised, a decision of tens of thousands of events, and a rejection with
// a reason of megabytes, are each recorded, and a redelivery reports the
// first result: every event's id, in order. A result row written before
// results were kept compactly still reports the ids it holds. Event
// counts and reason lengths are random.
func TestResultFitsItsRowWhateverTheLimits(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	lim := events.Limits{MaxPayloadBytes: 4 << 20, MaxEventsPerAppend: 50_000}
	makers := map[string]storeMaker{
		"memory": func(t *testing.T, reg *events.Registry) store {
			t.Helper()
			s, err := memstore.New(&memstore.Config{Registry: reg, Limits: lim})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
		"postgres": func(t *testing.T, reg *events.Registry) store {
			t.Helper()
			db := pgtest.New(t, nil)
			s, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg, Limits: lim})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
	}
	for name, mk := range makers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			rng := rand.New(rand.NewPCG(seed, 7))
			s := mk(t, registry(t))

			// About 39 bytes an id: over 26,900 ids would not fit a row.
			n := 28_000 + rng.IntN(12_000)
			many := sent(t, s, "process-many", Deposit{Account: "m", Amount: n})
			decideMany := func(_ context.Context, _ int, c Deposit) ([]any, error) {
				out := make([]any, c.Amount)
				for i := range out {
					out[i] = Deposited{Amount: 1}
				}
				return out, nil
			}
			first, err := tryRunIn(t, s, many, decideMany)
			require.NoError(t, err, "a decision of %d events", n)
			require.Len(t, first.EventIDs, n)
			require.Equal(t, first, runIn(t, s, many, decideMany), "a redelivery reports every event's id")
			got, err := s.ReadStream(ctx, "account-m", 1, n)
			require.NoError(t, err)
			require.Len(t, got, n)
			for i, env := range got {
				require.Equal(t, env.ID, first.EventIDs[i], "event %d", i+1)
			}

			long := sent(t, s, "process-long", Deposit{Account: "l", Amount: 1})
			reason := strings.Repeat("r", 1<<20+rng.IntN(2<<20))
			rejectLong := func(context.Context, int, Deposit) ([]any, error) { return nil, command.Reject(reason) }
			res, err := tryRunIn(t, s, long, rejectLong)
			require.NoError(t, err, "a rejection of %d bytes", len(reason))
			require.Less(t, len(res.Rejected), 8<<10, "the reason as stored is cut")
			require.Equal(t, res, runIn(t, s, long, rejectLong), "a redelivery reports the rejection")

			// A row as results were kept before: every id written out.
			old := sent(t, s, "process-old", Deposit{Account: "o", Amount: 1})
			ids := []string{"0d6b1c8e-7a0c-4c52-9d1e-4a5b6c7d8e9f", "1d6b1c8e-7a0c-4c52-9d1e-4a5b6c7d8e9f"}
			row, err := json.Marshal(map[string]any{"command_id": old.ID, "stream_id": "account-o", "event_ids": ids, "token": old.Token})
			require.NoError(t, err)
			require.NoError(t, s.Rows().Put(ctx, "converge.command", "results", old.ID, row, old.Token))
			res = runIn(t, s, old, func(context.Context, int, Deposit) ([]any, error) {
				return nil, errors.New("decided again")
			})
			require.Equal(t, command.Result{CommandID: old.ID, StreamID: "account-o", EventIDs: ids, Token: old.Token}, res, "an earlier release's row")
		})
	}
}
