package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
)

// TestShowSaysWhenAFailedStepRunsAgain: a step parked after failures
// shows its attempts, its next run and its last error, and no models it
// does not wait for.
func TestShowSaysWhenAFailedStepRunsAgain(t *testing.T) {
	t.Parallel()
	since := time.Date(2026, 12, 4, 10, 0, 0, 0, time.UTC)
	in := saga.Info{
		Saga: "orders", ID: "o-1", Status: saga.StatusParked, ParkedSince: since,
		ParkedType: "order.placed", ParkedEvent: "e-1",
		RetryAt: since.Add(90 * time.Second), Attempts: 3, LastError: "card service: 503\x00",
	}
	var out bytes.Buffer
	require.NoError(t, writeTimeline(&out, saga.Timeline{Info: in}))
	require.Contains(t, out.String(), "parked since 2026-12-04T10:00:00Z on order.placed e-1 (stuck: false)\n")
	require.Contains(t, out.String(), `failed 3 times; next attempt at 2026-12-04T10:01:30Z; last error: "card service: 503\x00"`+"\n",
		"the error is quoted where it is not printable")
	require.NotContains(t, out.String(), "waiting for")
}
