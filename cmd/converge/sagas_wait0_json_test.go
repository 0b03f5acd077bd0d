package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// TestCancelWait0JSONPrintsTheRequest: `sagas cancel ID --wait 0
// --json` is documented to print the request, recorded and not yet
// carried out. When an engine takes the request before the command reads
// it back, the command prints a zero request (op "", at year 1) and exits
// 0 instead of the request it recorded.
func TestCancelWait0JSONPrintsTheRequest(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store := newJobsStore(t)
	jobs := saga.New[cliJob]("jobs", nil)
	saga.StartOn(jobs, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
		func(s *saga.Step[cliJob], _ cliJobStarted) error { s.State().Runs++; return nil })
	eng, err := saga.NewEngine(&saga.EngineConfig{
		Store: store, Sagas: []saga.Definition{jobs},
		SweepInterval: time.Millisecond, Logger: slog.New(slog.DiscardHandler),
	})
	require.NoError(t, err)
	const n = 60
	for i := range n {
		stream := fmt.Sprint("job-", i)
		_, err = store.Append(ctx, stream, events.AnyVersion, events.Event{Data: cliJobStarted{ID: fmt.Sprint("j", i)}})
		require.NoError(t, err)
		handleStream(t, store, eng, stream)
	}
	require.NoError(t, eng.Start(ctx))
	t.Cleanup(func() { require.NoError(t, eng.Stop(context.Background())) })
	for i := range n {
		out, err := runCLI(t, "sagas", "cancel", fmt.Sprint("j", i), "--type", "jobs", "--wait", "0", "--json", "--database-url", db.URL, "--schema", db.Schema)
		require.NoError(t, err, out)
		var got recordedRequest
		require.NoError(t, json.Unmarshal([]byte(strings.TrimSpace(out)), &got), out)
		require.Equal(t, saga.OpCancel, got.Request.Op, "instance j%d: the printed request is not the one recorded: %s", i, out)
		require.Equal(t, "cancelled by an operator", got.Request.Reason, out)
		require.False(t, got.Request.At.IsZero(), out)
	}
}
