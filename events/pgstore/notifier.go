package pgstore

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
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
//
// Nobody to tell, nothing sent: this process's own readers are woken
// in-process, so NOTIFYs only matter while another store listens on the
// schema. The notifier counts the other listen connections once per
// presenceInterval, and a store that starts listening says hello at once
// (see listen.go), so a newcomer is not left waiting for the next count.
type notifier struct {
	pool   *pgxpool.Pool
	log    *outageLog
	gap    time.Duration
	schema string

	// others is whether another store's listen connection exists.
	others atomic.Bool
	// ownListener is the backend pid of this store's listen connection.
	ownListener atomic.Uint32
	// hellos counts the newcomers heard of (newcomer), so that a count of
	// listeners that began before a hello does not undo it.
	hellos atomic.Uint64
	// counted, when set (tests), runs between a count's query and its use.
	counted func()

	mu      sync.Mutex
	pending map[string]string // key -> newest payload
	// held keeps what was not sent while nobody listened, newest per key:
	// it goes out as soon as a listener appears, so one that arrives
	// between two counts still hears of the latest changes.
	held   map[string]string
	kickCh chan struct{}
}

// presenceInterval is how often the notifier counts other listeners.
const presenceInterval = time.Second

func newNotifier(pool *pgxpool.Pool, log *slog.Logger, gap time.Duration, schema string) *notifier {
	n := &notifier{pool: pool, log: newOutageLog(log, "notify", "other processes see changes at their next poll"), gap: gap, schema: schema, pending: map[string]string{}, held: map[string]string{}, kickCh: make(chan struct{}, 1)}
	n.others.Store(true) // until the first count says otherwise
	return n
}

// kick queues payload under key; a newer payload for the same key replaces
// an unsent one. While nobody else listens it goes straight to held,
// without waking the sending goroutine: an append then costs a map write,
// not a goroutine switch. others is read under mu, and setOthers swaps it
// before taking mu to move held to pending, so a payload is never left in
// held after a listener appeared.
func (n *notifier) kick(key, payload string) {
	n.mu.Lock()
	if !n.others.Load() {
		n.held[key] = payload
		n.mu.Unlock()
		return
	}
	n.pending[key] = payload
	n.mu.Unlock()
	select {
	case n.kickCh <- struct{}{}:
	default:
	}
}

// newcomer records that another store started listening and re-announces
// the newest changes, in case they committed after its catch-up read but
// before this store knew it was there.
func (n *notifier) newcomer(payload string) {
	n.hellos.Add(1)
	n.kick("e", payload)
	n.setOthers(true)
}

// setOthers records whether anyone else listens; when someone appears, what
// was held back is sent.
func (n *notifier) setOthers(others bool) {
	if n.others.Swap(others) || !others {
		return
	}
	n.mu.Lock()
	for k, p := range n.held {
		n.pending[k] = p
	}
	clear(n.held)
	n.mu.Unlock()
	select {
	case n.kickCh <- struct{}{}:
	default:
	}
}

func (n *notifier) run(ctx context.Context) {
	count := time.NewTicker(presenceInterval)
	defer count.Stop()
	n.countListeners(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-count.C:
			n.countListeners(ctx)
			continue
		case <-n.kickCh:
		}
		n.mu.Lock()
		batch := n.pending
		n.pending = make(map[string]string, len(batch))
		if !n.others.Load() {
			for k, p := range batch {
				n.held[k] = p
			}
			n.mu.Unlock()
			continue
		}
		n.mu.Unlock()
		for _, payload := range batch {
			// Not cancelled by Close: cancelling a running query makes pgx
			// open a connection to send a cancel request, which can stall
			// shutdown for seconds; a NOTIFY takes a millisecond.
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			_, err := n.pool.Exec(sctx, `SELECT pg_notify($1, $2)`, NotifyChannel, payload)
			cancel()
			switch {
			case err == nil:
				n.log.recovered()
			case ctx.Err() == nil:
				n.log.failed(err)
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

// countListeners asks PostgreSQL whether any other store listens on this
// schema. On error it assumes someone does: a wasted NOTIFY is cheap, a
// missing one delays a reader.
func (n *notifier) countListeners(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, presenceInterval)
	defer cancel()
	var others bool
	hellos := n.hellos.Load()
	err := n.pool.QueryRow(cctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND pid <> $2)`,
		listenAppName(n.schema), int64(n.ownListener.Load())).Scan(&others)
	if err != nil {
		others = true
	}
	if n.counted != nil {
		n.counted()
	}
	if !others && n.hellos.Load() != hellos {
		// A newcomer said hello while the query ran: its listener may
		// not have been there when the query looked. Believe the hello
		// until the next count.
		return
	}
	n.setOthers(others)
}
