package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestDeadLettersOfProcessorNamesHoldingHash: a processor named with '#' by an
// older build (ProcessorConfig.Name accepted '#' then; ParsePartitionName
// documents that "a processor's name may hold '#'") keeps its dead
// letters under checkpoint "legacy#eu". `dead-letters list --processor
// legacy#eu` must list them, and the unfiltered list must name the
// processor as the rest of the CLI does (processorOf: "legacy#eu").
func TestDeadLettersOfProcessorNamesHoldingHash(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	store, conn := newCLIStore(t)
	res, err := store.Append(ctx, "order-1", events.AnyVersion,
		events.Event{Data: events.Raw{Type: "ticked", Payload: []byte(`{}`)}})
	require.NoError(t, err)
	for _, cp := range []string{"legacy#eu", "split#eu#1/2"} {
		env := events.Envelope{ID: res.EventIDs[0], StreamID: "order-1", Version: 1, Token: res.Token, Type: "ticked", Payload: []byte(`{}`)}
		rec := feed.DeadLetterRecord{Checkpoint: cp, Reason: "boom", Attempts: 3, At: time.Now().UTC(), Event: env}
		v, err := json.Marshal(rec)
		require.NoError(t, err)
		require.NoError(t, store.Rows().Put(ctx, feed.RuntimeNamespace, feed.DeadLettersTable, cp+"/"+res.EventIDs[0], v, res.Token))
	}

	for _, p := range []string{"legacy#eu", "split#eu"} {
		out, err := runCLI(t, append([]string{"dead-letters", "list", "--processor", p}, conn...)...)
		require.NoError(t, err, out)
		if strings.Contains(out, "no dead letters") {
			t.Errorf("--processor %s hides its dead letter: %s", p, out)
		}
	}
	out, err := runCLI(t, append([]string{"dead-letters", "list", "--json"}, conn...)...)
	require.NoError(t, err, out)
	procs := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var e deadLetterEntry
		require.NoError(t, json.Unmarshal([]byte(line), &e), out)
		procs[e.Checkpoint] = e.Processor
	}
	require.Equal(t, map[string]string{"legacy#eu": "legacy#eu", "split#eu#1/2": "split#eu"}, procs,
		"the processor of each checkpoint, as processorOf and lag name it")
}
