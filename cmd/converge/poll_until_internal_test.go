package main

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPollUntilSaysWhenTheDatabaseTimedOut: a wait that runs out while
// its checks were timing out against the database says so beside the
// timeout (a plain timeout reads as "the engine has not carried it out
// yet"); it is still a timeout to its caller.
func TestPollUntilSaysWhenTheDatabaseTimedOut(t *testing.T) {
	t.Parallel()
	failing := func(context.Context) (string, bool, error) {
		return "", false, fmt.Errorf("read request: %w", context.DeadlineExceeded)
	}
	_, err := pollUntil(context.Background(), io.Discard, 50*time.Millisecond, failing)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "could not read the database")

	pending := func(context.Context) (string, bool, error) { return "pending", false, nil }
	_, err = pollUntil(context.Background(), io.Discard, 50*time.Millisecond, pending)
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.NotContains(t, err.Error(), "could not read the database", "a wait that only ran out says only that")
}

// TestPollUntilSaysTheRequestStaysWhenInterrupted: a wait stopped by the
// operator (Ctrl-C cancels the command's context) says the request stays
// recorded, whether it was between checks or inside one.
func TestPollUntilSaysTheRequestStaysWhenInterrupted(t *testing.T) {
	t.Parallel()
	for _, inCheck := range []bool{false, true} {
		ctx, cancel := context.WithCancel(context.Background())
		check := func(ctx context.Context) (string, bool, error) {
			cancel()
			if inCheck {
				<-ctx.Done()
				return "", false, fmt.Errorf("read request: %w", ctx.Err())
			}
			return "pending", false, nil
		}
		_, err := pollUntil(ctx, io.Discard, time.Minute, check)
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorContains(t, err, "the request stays recorded", "interrupted in a check: %t", inCheck)
	}
}
