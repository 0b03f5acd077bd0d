package pgstore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// recordingHandler keeps every log record.
type recordingHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *recordingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *recordingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *recordingHandler) WithGroup(string) slog.Handler            { return h }
func (h *recordingHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.recs = append(h.recs, r)
	h.mu.Unlock()
	return nil
}

// take returns the records logged since the last take.
func (h *recordingHandler) take() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := h.recs
	h.recs = nil
	return out
}

func attr(r slog.Record, key string) slog.Value {
	var v slog.Value
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == key {
			v = a.Value
			return false
		}
		return true
	})
	return v
}

func TestOutageLogSummarisesRepeats(t *testing.T) {
	t.Parallel()
	h := &recordingHandler{}
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	o := newOutageLog(slog.New(h), "listen connection", "subscribers poll")
	o.now = func() time.Time { return now }
	boom := errors.New("connection refused")

	o.recovered()
	require.Empty(t, h.take(), "a success outside an outage is not news")

	o.failed(boom)
	recs := h.take()
	require.Len(t, recs, 1)
	require.Equal(t, slog.LevelWarn, recs[0].Level)
	require.Contains(t, recs[0].Message, "listen connection failed; subscribers poll")

	// Two attempts a second for 29 s: nothing more.
	for range 58 {
		now = now.Add(500 * time.Millisecond)
		o.failed(boom)
	}
	require.Empty(t, h.take(), "repeats within %s must not be logged one by one", outageLogEvery)

	now = now.Add(time.Second)
	o.failed(boom)
	recs = h.take()
	require.Len(t, recs, 1, "a summary once per %s", outageLogEvery)
	require.Equal(t, slog.LevelWarn, recs[0].Level)
	require.Contains(t, recs[0].Message, "still failing")
	require.Equal(t, int64(59), attr(recs[0], "failures_since_last_report").Int64())
	require.Equal(t, int64(60), attr(recs[0], "failures").Int64())
	require.Equal(t, 30*time.Second, attr(recs[0], "down_for").Duration())

	now = now.Add(10 * time.Second)
	o.failed(boom)
	require.Empty(t, h.take())
	o.recovered()
	recs = h.take()
	require.Len(t, recs, 1)
	require.Equal(t, slog.LevelInfo, recs[0].Level)
	require.Contains(t, recs[0].Message, "recovered")
	require.Equal(t, 40*time.Second, attr(recs[0], "down_for").Duration())
	require.Equal(t, int64(61), attr(recs[0], "failures").Int64())
	o.recovered()
	require.Empty(t, h.take(), "recovery is logged once")

	// The next outage starts over with a WARN.
	o.failed(boom)
	recs = h.take()
	require.Len(t, recs, 1)
	require.Contains(t, recs[0].Message, "failed;")
}
