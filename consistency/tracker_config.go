package consistency

import (
	"cmp"
	"fmt"
	"log/slog"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

const (
	// DefaultFallbackInterval is how often the fallback loop re-reads
	// positions: those of the names waited on and known while push
	// wake-ups are unavailable, those of the names push has left waiting
	// for an interval while they are.
	DefaultFallbackInterval = time.Second
	// DefaultTimeout is how long a wait lasts when its context has no
	// deadline: long enough for a healthy projection to catch up with a
	// user's own write, short enough for an HTTP request.
	DefaultTimeout = 2 * time.Second
	// DefaultMaxTimeout caps every wait, whatever deadline the caller asked
	// for.
	DefaultMaxTimeout = 10 * time.Second
	// DefaultMaxWaiters caps concurrent waits in one Tracker.
	DefaultMaxWaiters = 10_000
	// DefaultCountTimeout bounds the Counter call that fills Status.Behind.
	DefaultCountTimeout = 100 * time.Millisecond
	// DefaultQueryTimeout is the least time Read gives its query.
	DefaultQueryTimeout = time.Second
)

// TrackerConfig configures a Tracker. The zero value is usable: a tracker
// that learns positions only from Advance.
type TrackerConfig struct {
	// Positions reads durable checkpoints. The tracker reads a name the
	// first time it is waited on, again when a wait finds it behind while
	// push is not trusted, and from the fallback loop. Pass the
	// feed.CheckpointStore of the store the projections run on. Defaults to
	// nil: the tracker knows only what Advance and Watcher tell it.
	Positions PositionReader

	// Watcher pushes checkpoint moves, including other processes', into
	// Advance from Start to Stop. Defaults to nil: no push, so the fallback
	// loop polls every FallbackInterval while anyone waits.
	Watcher feed.CheckpointWatcher

	// PushHealthy reports whether Watcher currently delivers moves (pass the
	// source's feed.Source.PushHealthy). While it reports false the
	// fallback loop polls Positions for every name waited on or known;
	// while it reports true, only for the names waits have been blocked on
	// for an interval (see FallbackInterval). Defaults to nil, which trusts
	// Watcher whenever one is configured.
	PushHealthy func() bool

	// FallbackInterval is the period of the single fallback loop (one
	// goroutine per Tracker, never one per waiter). On each tick, when push
	// is not trusted (no Watcher, or PushHealthy reports false), it re-reads
	// the positions of the names that have waiters and of the names whose
	// position it knows, and once more on the first tick after push is
	// trusted again: moves announced while push was down are lost, and one
	// of them may be a rewind that no wait would otherwise read. While push
	// is trusted it reads, once each, the names waited on at this tick and
	// at the one before: healthy push can still miss a move (a writer that
	// dies, or loses its connection, between its commit and its
	// notification moves a checkpoint that nobody is told of, and nothing
	// announces it again), so a name push has left waiting for an
	// interval, or whose waits ended stale, is worth a read. A name whose
	// waits push answers in time is not read (one with waits at every
	// tick, or whose waits keep ending stale, is read once per interval),
	// and nothing is read while nobody waits. A wait for a move
	// whose notification was lost ends within about two intervals. A pass
	// is given this long, or QueryTimeout when that is longer. Defaults
	// to DefaultFallbackInterval (1s).
	FallbackInterval time.Duration

	// DefaultTimeout is how long a wait lasts when its context has no
	// deadline. Defaults to DefaultTimeout (2s), or MaxTimeout when that is
	// shorter.
	DefaultTimeout time.Duration

	// MaxTimeout caps every wait: a context deadline further away is
	// clamped to it, so no caller can hold a waiter slot for long. Defaults
	// to DefaultMaxTimeout (10s).
	MaxTimeout time.Duration

	// MaxWaiters caps concurrent waits that have to block. Beyond it Wait
	// does not block and does not fail: it returns at once with a stale
	// Status whose Reason is ReasonRejected, so a flood of reads degrades
	// to stale answers instead of exhausting memory or the database.
	// Defaults to DefaultMaxWaiters (10000).
	MaxWaiters int

	// Counter fills Status.Behind on stale results, rejected waits
	// (ReasonRejected) aside. Defaults to nil: Behind is -1 (unknown) when
	// stale.
	Counter Counter

	// CountTimeout bounds the Counter call. It is spent after the wait's
	// deadline, so keep it short. Defaults to DefaultCountTimeout (100ms).
	CountTimeout time.Duration

	// QueryTimeout is the least time Read gives its query. A wait that ends
	// stale has used up its context's deadline; the query then runs under
	// this budget instead, so the stale answer Read promises still comes.
	// It also bounds each read of Positions: a read is shared by every wait
	// on the name, so it runs on this budget rather than on the deadline of
	// the wait that happened to start it. Defaults to DefaultQueryTimeout
	// (1s).
	QueryTimeout time.Duration

	// Logger receives read failures and rejections. Defaults to
	// slog.Default().
	Logger *slog.Logger

	// Clock measures Status.Waited. Deadlines themselves run on real
	// timers, because they bound real request latency. Defaults to
	// events.SystemClock.
	Clock events.Clock
}

func (c TrackerConfig) withDefaults() TrackerConfig {
	c.FallbackInterval = cmp.Or(c.FallbackInterval, DefaultFallbackInterval)
	c.MaxTimeout = cmp.Or(c.MaxTimeout, DefaultMaxTimeout)
	c.DefaultTimeout = cmp.Or(c.DefaultTimeout, min(DefaultTimeout, c.MaxTimeout))
	c.MaxWaiters = cmp.Or(c.MaxWaiters, DefaultMaxWaiters)
	c.CountTimeout = cmp.Or(c.CountTimeout, DefaultCountTimeout)
	c.QueryTimeout = cmp.Or(c.QueryTimeout, DefaultQueryTimeout)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = events.SystemClock{}
	}
	return c
}

func (c TrackerConfig) validate() error {
	switch {
	case c.FallbackInterval < 0:
		return fmt.Errorf("consistency: TrackerConfig.FallbackInterval is %s, want > 0 (leave it 0 for the default)", c.FallbackInterval)
	case c.MaxTimeout < 0:
		return fmt.Errorf("consistency: TrackerConfig.MaxTimeout is %s, want > 0 (leave it 0 for the default)", c.MaxTimeout)
	case c.DefaultTimeout < 0:
		return fmt.Errorf("consistency: TrackerConfig.DefaultTimeout is %s, want > 0 (leave it 0 for the default)", c.DefaultTimeout)
	case c.DefaultTimeout > c.MaxTimeout:
		return fmt.Errorf("consistency: TrackerConfig.DefaultTimeout (%s) exceeds MaxTimeout (%s): lower DefaultTimeout or raise MaxTimeout",
			c.DefaultTimeout, c.MaxTimeout)
	case c.MaxWaiters < 0:
		return fmt.Errorf("consistency: TrackerConfig.MaxWaiters is %d, want > 0 (leave it 0 for the default)", c.MaxWaiters)
	case c.CountTimeout < 0:
		return fmt.Errorf("consistency: TrackerConfig.CountTimeout is %s, want > 0 (leave it 0 for the default)", c.CountTimeout)
	case c.QueryTimeout < 0:
		return fmt.Errorf("consistency: TrackerConfig.QueryTimeout is %s, want > 0 (leave it 0 for the default)", c.QueryTimeout)
	}
	return nil
}
