package feed_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// TestGiveUpReasonWithInvalidUTF8StaysWithin4KiB: the package doc promises
// a recorded reason of at most 4 KiB in all. An error message of invalid
// UTF-8 (bytes from a driver, a file name) under 4 KiB is not cut, and the
// row's JSON writes each invalid byte as U+FFFD (3 bytes), so the stored
// reason, read back, is up to three times the bound.
// TestGiveUpReasonWithInvalidUTF8StaysWithin4KiB: an error of invalid
// UTF-8 is measured as it is stored (each invalid byte became three bytes
// of U+FFFD in the row's JSON, past the 4 KiB the doc promises).
func TestGiveUpReasonWithInvalidUTF8StaysWithin4KiB(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	store, src := newMemstore(t)
	res, err := store.Append(ctx, "s-1", events.AnyVersion, events.Event{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}})
	require.NoError(t, err)
	bad := res.EventIDs[0]
	got := make(chan struct{}, 2)
	p, err := feed.NewProcessor(src, &feed.ProcessorConfig{
		Name: "give_up_utf8", MaxAttempts: 2, OnFailure: feed.DeadLetter, Subscriber: fastRetries(),
		OnDeadLetter: func(feed.DeadLetterRecord) { got <- struct{}{} },
	}, func(_ context.Context, env events.Envelope) error {
		if env.ID == bad {
			return errors.New(strings.Repeat("\xff", 4000))
		}
		return nil
	})
	require.NoError(t, err)
	runProcessor(t, p)
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("the processor never gave up on the event")
	}
	letters, err := p.DeadLetters(ctx, 10)
	require.NoError(t, err)
	require.Len(t, letters, 1)
	require.LessOrEqual(t, len(letters[0].Reason), 4<<10, "the stored reason is %d bytes", len(letters[0].Reason))
}
