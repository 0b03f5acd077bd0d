package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sync/errgroup"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

func raw(i int) events.Event {
	return events.Event{Data: events.Raw{Type: "test.tick", Payload: json.RawMessage(fmt.Sprintf(`{"i":%d}`, i))}}
}

// feedChecker follows the global feed and fails on a skip, a duplicate, a
// stream out of version order or a token that does not increase.
type feedChecker struct {
	t     *testing.T
	store interface {
		ReadAll(context.Context, events.Token, int) ([]events.Envelope, error)
		Wake() <-chan struct{}
	}
	last     events.Token
	seen     map[string]bool
	versions map[string]int64
}

func newFeedChecker(t *testing.T, st interface {
	ReadAll(context.Context, events.Token, int) ([]events.Envelope, error)
	Wake() <-chan struct{}
},
) *feedChecker {
	t.Helper()
	return &feedChecker{t: t, store: st, seen: map[string]bool{}, versions: map[string]int64{}}
}

// pass reads until the feed is exhausted for now; it returns how many events
// it saw.
func (c *feedChecker) pass(ctx context.Context) (int, error) {
	n := 0
	for {
		evs, err := c.store.ReadAll(ctx, c.last, 200)
		if err != nil {
			return n, err
		}
		if len(evs) == 0 {
			return n, nil
		}
		for _, e := range evs {
			if !e.Token.After(c.last) {
				return n, fmt.Errorf("token %v of %s/%d does not follow %v", e.Token, e.StreamID, e.Version, c.last)
			}
			if c.seen[e.ID] {
				return n, fmt.Errorf("event %s delivered twice", e.ID)
			}
			if want := c.versions[e.StreamID] + 1; e.Version != want {
				return n, fmt.Errorf("stream %s: got version %d, want %d (skipped or out of order)", e.StreamID, e.Version, want)
			}
			c.seen[e.ID] = true
			c.versions[e.StreamID] = e.Version
			c.last = e.Token
			n++
		}
	}
}

// readAtLeast reads the whole feed until it holds n events. Transactions of
// other tests running in parallel hold the cluster-wide horizon too, so a
// just-committed event may take a moment to become readable; there is no
// signal for "someone else's transaction ended", hence the poll.
func readAtLeast(t *testing.T, st interface {
	ReadAll(context.Context, events.Token, int) ([]events.Envelope, error)
}, n int,
) []events.Envelope {
	t.Helper()
	var evs []events.Envelope
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var err error
		evs, err = st.ReadAll(context.Background(), events.Token{}, 0)
		require.NoError(c, err)
		assert.GreaterOrEqual(c, len(evs), n, "events readable")
	}, 30*time.Second, 2*time.Millisecond) // a whole package's tests run beside this one
	return evs
}

// TestOrderingTrap is the deterministic form of the trap: a transaction
// that took its id early appends the next version of a stream that a
// later-numbered transaction appended to meanwhile.
func TestOrderingTrap(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil, 6)
	_, err := b.db.Pool.Exec(ctx, "CREATE TABLE side (v int)")
	require.NoError(t, err)

	early, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = early.Rollback(ctx) }()
	_, err = early.Exec(ctx, "INSERT INTO side VALUES (1)") // takes the older transaction id
	require.NoError(t, err)

	first, err := b.store.Append(ctx, "trap-1", events.NoStream, raw(1))
	require.NoError(t, err)
	second, err := b.store.AppendTx(ctx, early, "trap-1", events.Exactly(1), raw(2))
	require.NoError(t, err)
	require.True(t, second.Token.After(first.Token), "version 2's token must follow version 1's")
	require.NoError(t, early.Commit(ctx))

	evs := readAtLeast(t, b.store, 2)
	require.Len(t, evs, 2)
	require.Equal(t, []int64{1, 2}, []int64{evs[0].Version, evs[1].Version})
	require.Equal(t, second.Token, evs[1].Token)
}

// TestHorizonHoldsBackButNeverSkips shows a long transaction delaying, not
// losing, events: an event appended after it started is not readable until
// it ends, and the older transaction's own event then comes first.
func TestHorizonHoldsBackButNeverSkips(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil, 6)

	long, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = long.Rollback(ctx) }()
	mine, err := b.store.AppendTx(ctx, long, "long-1", events.NoStream, raw(1))
	require.NoError(t, err)

	later, err := b.store.Append(ctx, "other-1", events.NoStream, raw(2))
	require.NoError(t, err)
	batch, err := b.store.ReadFeed(ctx, events.Token{}, feed.Filter{}, 10)
	require.NoError(t, err)
	require.Empty(t, batch.Events, "nothing may be read past an open older transaction")
	require.True(t, batch.Pending, "the committed event is pending behind the horizon")

	age, err := b.store.HorizonAge(ctx)
	require.NoError(t, err)
	require.Positive(t, age)

	require.NoError(t, long.Commit(ctx))
	evs := readAtLeast(t, b.store, 2)
	require.Len(t, evs, 2)
	require.Equal(t, mine.Token, evs[0].Token)
	require.Equal(t, later.Token, evs[1].Token)
}

// TestAdversarialOrdering runs many writers of every awkward kind while a
// reader follows the feed, then checks the reader saw every committed event
// exactly once, each stream in order, with increasing tokens.
func TestAdversarialOrdering(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b := setup(t, nil, 24)
	_, err := b.db.Pool.Exec(ctx, "CREATE TABLE side (v int)")
	require.NoError(t, err)

	const (
		streams    = 6
		perWriter  = 40
		plain      = 4 // writers appending with AnyVersion or Exactly+retry
		trappers   = 3 // write elsewhere first, then append
		rollbacks  = 2 // append, then roll back
		longWaiter = 1 // hold a transaction open across others' appends
	)
	stream := func(r *rand.Rand) string { return fmt.Sprintf("adv-%d", r.IntN(streams)) }
	var committed atomic.Int64

	// appendRetry appends with an exact expected version, rereading on
	// conflict, inside tx when given.
	appendRetry := func(ctx context.Context, tx pgx.Tx, id string, n int) error {
		for {
			v, err := b.store.StreamVersion(ctx, id)
			if err != nil {
				return err
			}
			evs := make([]events.Event, n)
			for i := range evs {
				evs[i] = raw(i)
			}
			if tx == nil {
				_, err = b.store.Append(ctx, id, events.Exactly(v), evs...)
			} else {
				_, err = b.store.AppendTx(ctx, tx, id, events.Exactly(v), evs...)
			}
			if err == nil {
				return nil
			}
			if !errors.Is(err, events.ErrWrongExpectedVersion) {
				return err
			}
		}
	}

	writers, wctx := errgroup.WithContext(ctx)
	for w := range plain {
		writers.Go(func() error {
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for i := range perWriter {
				n := 1 + r.IntN(3)
				var err error
				if i%2 == 0 {
					evs := make([]events.Event, n)
					for j := range evs {
						evs[j] = raw(j)
					}
					_, err = b.store.Append(wctx, stream(r), events.AnyVersion, evs...)
				} else {
					err = appendRetry(wctx, nil, stream(r), n)
				}
				if err != nil {
					return fmt.Errorf("plain writer %d: %w", w, err)
				}
				committed.Add(int64(n))
			}
			return nil
		})
	}
	for w := range trappers {
		writers.Go(func() error {
			r := rand.New(rand.NewPCG(uint64(w), 2))
			for range perWriter / 2 {
				err := pgx.BeginFunc(wctx, b.db.Pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(wctx, "INSERT INTO side VALUES (1)"); err != nil {
						return err
					}
					// Let other writers take newer ids and append meanwhile.
					time.Sleep(time.Duration(r.IntN(3)) * time.Millisecond)
					return appendRetry(wctx, tx, stream(r), 1)
				})
				if err != nil {
					return fmt.Errorf("trap writer %d: %w", w, err)
				}
				committed.Add(1)
			}
			return nil
		})
	}
	for w := range rollbacks {
		writers.Go(func() error {
			r := rand.New(rand.NewPCG(uint64(w), 3))
			for range perWriter / 2 {
				tx, err := b.db.Pool.Begin(wctx)
				if err != nil {
					return err
				}
				if _, err := b.store.AppendTx(wctx, tx, stream(r), events.AnyVersion, raw(0), raw(1)); err != nil {
					_ = tx.Rollback(wctx)
					return fmt.Errorf("rollback writer %d: %w", w, err)
				}
				if err := tx.Rollback(wctx); err != nil {
					return err
				}
			}
			return nil
		})
	}
	for w := range longWaiter {
		writers.Go(func() error {
			r := rand.New(rand.NewPCG(uint64(w), 4))
			for range 4 {
				err := pgx.BeginFunc(wctx, b.db.Pool, func(tx pgx.Tx) error {
					if _, err := tx.Exec(wctx, "INSERT INTO side VALUES (2)"); err != nil {
						return err
					}
					// Held open while the others append: the reader must
					// wait for it, not pass it.
					time.Sleep(50 * time.Millisecond)
					return appendRetry(wctx, tx, stream(r), 2)
				})
				if err != nil {
					return fmt.Errorf("long writer %d: %w", w, err)
				}
				committed.Add(2)
			}
			return nil
		})
	}

	// The reader follows the feed while the writers run, and then until it
	// reaches the head (other tests' transactions may still hold the
	// horizon for a moment).
	checker := newFeedChecker(t, b.store)
	writersDone := make(chan error, 1)
	go func() { writersDone <- writers.Wait() }()
	var (
		readErr error
		wg      sync.WaitGroup
		head    events.Token
	)
	finalHead := make(chan events.Token, 1)
	wg.Add(1)
	go func() {
		defer wg.Done()
		target, done := events.Token{}, false
		giveUp := time.After(2 * time.Minute)
		for {
			wake := b.store.Wake()
			if _, err := checker.pass(ctx); err != nil {
				readErr = err
				return
			}
			if done && !checker.last.Before(target) {
				return
			}
			select {
			case target = <-finalHead:
				done = true
			case <-wake:
			case <-time.After(5 * time.Millisecond): // events pending behind the horizon
			case <-giveUp:
				readErr = fmt.Errorf("reader stuck at %v, head %v", checker.last, target)
				return
			}
		}
	}()
	require.NoError(t, <-writersDone)
	head, err = b.store.Head(ctx)
	require.NoError(t, err)
	finalHead <- head
	wg.Wait()
	require.NoError(t, readErr)

	var inDB int64
	require.NoError(t, b.db.Pool.QueryRow(ctx, "SELECT count(*) FROM events").Scan(&inDB))
	require.Equal(t, committed.Load(), inDB, "rolled-back appends must leave nothing")
	require.Equal(t, int(inDB), len(checker.seen), "the reader must see every committed event")
	require.Equal(t, head, checker.last)
	for id, v := range checker.versions {
		sv, err := b.store.StreamVersion(ctx, id)
		require.NoError(t, err)
		require.Equal(t, sv, v, id)
	}
}

// TestFilteredReadReportsUnmatchedPending: a filtered reader moves its
// checkpoint past events it does not handle, so events it does not handle
// that are committed but held back by an older open transaction (in any
// schema: the horizon is the cluster's) are pending for it too. Reported
// as not pending, the reader would wait for a wake-up that the
// transaction holding the horizon back may never send.
func TestFilteredReadReportsUnmatchedPending(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b := setup(t, nil, 6)
	handled := feed.Filter{Types: []string{"handled"}}

	long, err := b.db.Pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = long.Rollback(ctx) }()
	var xid int64
	require.NoError(t, long.QueryRow(ctx, "SELECT txid_current()").Scan(&xid)) // holds the horizon

	unmatched, err := b.store.Append(ctx, "other-1", events.NoStream, events.Event{Data: events.Raw{Type: "unhandled", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)
	batch, err := b.store.ReadFeed(ctx, events.Token{}, handled, 10)
	require.NoError(t, err)
	require.Empty(t, batch.Events)
	require.True(t, batch.ScannedTo.IsZero(), "nothing readable yet")
	require.True(t, batch.Pending, "an unmatched event behind the horizon is pending for a filtered reader")

	require.NoError(t, long.Rollback(ctx))
	// Other tests' transactions may hold the cluster's horizon a moment
	// longer: read until it passed, as a reader retrying pending reads does.
	var delivered []events.Envelope // by any of the reads: must stay empty
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		var err error
		batch, err = b.store.ReadFeed(ctx, events.Token{}, handled, 10)
		require.NoError(c, err)
		delivered = append(delivered, batch.Events...)
		assert.False(c, batch.Pending, "still pending")
	}, 10*time.Second, 2*time.Millisecond)
	require.Empty(t, delivered, "the filter matches none of the events")
	require.Equal(t, unmatched.Token, batch.ScannedTo, "once readable, the reader looks past it")
}
