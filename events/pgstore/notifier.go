package pgstore

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// notifier sends NOTIFYs after commits, outside the writers' transactions.
//
// A NOTIFY inside a transaction makes its commit take a database-wide lock,
// which serialises every notifying commit and defeats group commit. Sending
// it just after the commit costs one short statement, and coalescing means a
// burst of appends sends one notification per key, not one per append. A
// notification lost because the process died in between is covered by the
// subscribers' safety poll.
type notifier struct {
	pool *pgxpool.Pool
	log  *slog.Logger
	gap  time.Duration

	mu      sync.Mutex
	pending map[string]string // key -> newest payload
	kickCh  chan struct{}
}

func newNotifier(pool *pgxpool.Pool, log *slog.Logger, gap time.Duration) *notifier {
	return &notifier{pool: pool, log: log, gap: gap, pending: map[string]string{}, kickCh: make(chan struct{}, 1)}
}

// kick queues payload under key; a newer payload for the same key replaces
// an unsent one.
func (n *notifier) kick(key, payload string) {
	n.mu.Lock()
	n.pending[key] = payload
	n.mu.Unlock()
	select {
	case n.kickCh <- struct{}{}:
	default:
	}
}

func (n *notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-n.kickCh:
		}
		n.mu.Lock()
		batch := n.pending
		n.pending = make(map[string]string, len(batch))
		n.mu.Unlock()
		for _, payload := range batch {
			// Not cancelled by Close: cancelling a running query makes pgx
			// open a connection to send a cancel request, which can stall
			// shutdown for seconds; a NOTIFY takes a millisecond.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, err := n.pool.Exec(sctx, `SELECT pg_notify($1, $2)`, NotifyChannel, payload)
			cancel()
			if err != nil && ctx.Err() == nil {
				n.log.Warn("converge: notify failed; other processes will see the change at their next poll", "err", err)
			}
		}
		// A gap after each send: a quiet store notifies at once, a busy
		// one sends at most one NOTIFY per gap for everything committed
		// meanwhile, instead of one statement per append.
		if n.gap > 0 {
			t := time.NewTimer(n.gap)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
	}
}
