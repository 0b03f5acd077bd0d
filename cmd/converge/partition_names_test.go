package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestPartitionCheckpointNamesAreNotProcessorNames: `converge lag` and
// `dead-letters list --processor` take processor names alike. A split
// processor is reported, and its dead letters listed, under its own name;
// the checkpoint name of one of its partitions ("split#1/3") is refused
// by both, naming the processor to give instead (lag accepted it and
// reported one partition as if it were a projection), and lag's list of
// known names lists the processor, not its partitions.
func TestPartitionCheckpointNamesAreNotProcessorNames(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db := pgtest.New(t, nil)
	store, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	conn := []string{"--database-url", db.URL, "--schema", db.Schema}

	var head events.Token
	for i := range 4 {
		res, err := store.Append(ctx, "order-"+strings.Repeat("x", i+1), events.AnyVersion,
			events.Event{Data: events.Raw{Type: "ticked", Payload: []byte(`{}`)}})
		require.NoError(t, err)
		head = res.Token
	}
	p, err := feed.NewProcessor(store, &feed.ProcessorConfig{Name: "split", Partitions: 3},
		func(context.Context, events.Envelope) error { return nil })
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	require.Eventually(t, func() bool {
		pos, err := p.Position(ctx)
		return err == nil && !pos.Before(head)
	}, 30*time.Second, 5*time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		require.NoError(t, err, "Run ends by its context")
	}
	require.NoError(t, p.Close())

	out, err := runCLI(t, append([]string{"lag", "split#1/3"}, conn...)...)
	require.EqualError(t, err, `lag: "split#1/3" is the checkpoint of a partition of processor "split": name the processor, split, which lag reports as one line, at its slowest partition`)
	require.Empty(t, out)
	out, err = runCLI(t, append([]string{"dead-letters", "list", "--processor", "split#1/3"}, conn...)...)
	require.EqualError(t, err, `dead-letters list: "split#1/3" is the checkpoint of a partition of processor "split": name the processor, --processor split (each dead letter shows its checkpoint)`)
	require.Empty(t, out)

	_, err = runCLI(t, append([]string{"lag", "splt"}, conn...)...)
	require.EqualError(t, err, `lag: no projection named "splt" in schema "`+db.Schema+`"; known: split`)

	// The processor's own name, in both.
	out, err = runCLI(t, append([]string{"lag", "split", "--sla", "1h"}, conn...)...)
	require.NoError(t, err, out)
	require.Len(t, tableRows(t, out), 1, out)
	out, err = runCLI(t, append([]string{"dead-letters", "list", "--processor", "split"}, conn...)...)
	require.NoError(t, err, out)
	require.Equal(t, `no dead letters of processor split in schema "`+db.Schema+`"`+"\n", out)
}
