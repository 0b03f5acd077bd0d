package pgstore_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/faultproxy"
)

// TestAppendCancelCauseAfterAnUnknownOutcome: the first attempt's reply
// is lost (it committed), then the caller's context ends with a cause of
// its own (context.WithCancelCause) while the retry waits for a
// connection. Append reports ErrOutcomeUnknown, as for a plain
// cancellation, not the bare cause, which would read as "nothing was
// written" and make a caller that retries with fresh ids write twice.
func TestAppendCancelCauseAfterAnUnknownOutcome(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	var armed atomic.Bool
	errGone := errors.New("client went away")
	b := setupFaults(t, pgstore.AppendRetry{InitialBackoff: 300 * time.Millisecond}, func(c *pgxpool.Config) {
		c.PrepareConn = func(context.Context, *pgx.Conn) (bool, error) {
			if armed.Load() {
				cancel(errGone)
				return false, nil
			}
			return true, nil
		}
	})
	stream := "order-" + uuid.NewString()
	fired := b.proxy.Inject(faultproxy.Fault{Match: faultproxy.Contains(stream)})
	go func() {
		<-fired
		armed.Store(true)
	}()
	_, err := b.store.Append(ctx, stream, events.NoStream, rawEvent(1))
	t.Logf("Append: %v", err)
	got, rerr := b.direct.ReadStream(context.Background(), stream, 1, 0)
	require.NoError(t, rerr)
	t.Logf("stored events: %d", len(got))
	require.ErrorIs(t, err, events.ErrOutcomeUnknown, "the first attempt's commit was never confirmed (and in fact it committed)")
}
