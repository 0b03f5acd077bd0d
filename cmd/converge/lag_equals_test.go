package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestLagNamesAProcessorWithEquals: feed.ProcessorConfig.Name accepts
// '=' (only '#', '/' and control characters are refused), and `converge
// lag` without arguments reports such a processor; NAME=SLA splits at the
// last '=', so it can be named with its SLA.
func TestLagNamesAProcessorWithEquals(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, conn := newCLIStore(t)
	res, err := store.Append(ctx, "order-1", events.AnyVersion,
		events.Event{Data: events.Raw{Type: "ticked", Payload: []byte(`{}`)}})
	require.NoError(t, err)

	const name = "billing=eu"
	p, err := feed.NewProcessor(store, &feed.ProcessorConfig{Name: name},
		func(context.Context, events.Envelope) error { return nil })
	require.NoError(t, err, "the name is accepted")
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- p.Run(runCtx) }()
	require.Eventually(t, func() bool {
		pos, err := p.Position(ctx)
		return err == nil && !pos.Before(res.Token)
	}, 30*time.Second, 5*time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		require.NoError(t, err)
	}
	require.NoError(t, p.Close())

	out, err := runCLI(t, append([]string{"lag", "--sla", "1h"}, conn...)...)
	require.NoError(t, err, out)
	require.Contains(t, out, name, "lag lists it")

	out, err = runCLI(t, append([]string{"lag", name + "=1h"}, conn...)...)
	require.NoError(t, err, "naming it with its own SLA: %s", out)
	require.Contains(t, out, name)
}
