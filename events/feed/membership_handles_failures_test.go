package feed_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
)

// hfRows fails List (failList) or Put (failPut) on feed.MembersHandleTable.
type hfRows struct {
	feed.Rows
	failList, failPut *atomic.Bool
}

var errInjected = errors.New("injected: rows unavailable")

func (r hfRows) List(ctx context.Context, ns, table string, q feed.RowQuery) ([]feed.Row, error) {
	if table == feed.MembersHandleTable && r.failList.Load() {
		return nil, errInjected
	}
	return r.Rows.List(ctx, ns, table, q)
}

func (r hfRows) Put(ctx context.Context, ns, table, key string, v json.RawMessage, tok events.Token) error {
	if table == feed.MembersHandleTable && r.failPut.Load() {
		return errInjected
	}
	return r.Rows.Put(ctx, ns, table, key, v, tok)
}

type hfSource struct {
	*memstore.Store
	rows hfRows
}

func (s hfSource) Rows() feed.Rows { return s.rows }

type hfSeen struct {
	mu   sync.Mutex
	seen []string // "who:type"
}

func (s *hfSeen) add(x string) { s.mu.Lock(); s.seen = append(s.seen, x); s.mu.Unlock() }
func (s *hfSeen) list() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.seen)
}

func (s *hfSeen) has(x string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Contains(s.seen, x)
}

func hfStart(t *testing.T, src feed.Source, who string, types []string, seen *hfSeen) *feed.Processor {
	t.Helper()
	p, err := feed.NewProcessor(src, &feed.ProcessorConfig{
		Name: "rolling", Types: types, Partitions: 1,
		Subscriber: feed.SubscriberConfig{Owner: who, LeaseTTL: 300 * time.Millisecond},
	}, func(_ context.Context, env events.Envelope) error {
		seen.add(who + ":" + env.Type)
		return nil
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.ErrorIs(t, <-done, context.Canceled); _ = p.Close() })
	return p
}

func hfActive(p *feed.Processor) bool {
	st := p.Status()
	return len(st.Partitions) == 1 && st.Partitions[0].State == feed.PartitionActive
}

func hfAppend(t *testing.T, st *memstore.Store, stream, typ string) {
	t.Helper()
	_, err := st.Append(context.Background(), stream, events.AnyVersion, events.Event{Data: events.Raw{Type: typ, Payload: []byte(`{}`)}})
	require.NoError(t, err)
}

// TestHandlesUnknownStandsBy: the older build (Types a) holds the
// partition, and a newer build (Types a, b) joins while what it handles
// cannot be known to the older process: the older one's read of the rows
// fails (its heartbeat works), or the newcomer's write of its row fails.
// Keeping its split, or counting the newcomer as handling nothing, the
// older process would filter out the newer build's "b" and move the
// checkpoint past it for good. It stands by instead (and so does the
// newcomer without its row), and once the rows work the newer build
// delivers "b".
func TestHandlesUnknownStandsBy(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// olderList fails the older process's reads of the rows, else the
		// newer process's write of its row fails.
		olderList bool
		// newerDelivers: the newcomer, which knows everyone's rows, takes
		// the partition meanwhile.
		newerDelivers bool
	}{
		{"older cannot read the rows", true, true},
		{"newer cannot write its row", false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			st, err := memstore.New(nil)
			require.NoError(t, err)
			t.Cleanup(func() { _ = st.Close() }) // after the processors stop
			var failing, never atomic.Bool
			olderRows, newerRows := hfRows{Rows: st.Rows(), failList: &never, failPut: &never}, hfRows{Rows: st.Rows(), failList: &never, failPut: &never}
			if tc.olderList {
				olderRows.failList = &failing
			} else {
				newerRows.failPut = &failing
			}
			seen := &hfSeen{}
			older := hfStart(t, hfSource{Store: st, rows: olderRows}, "a-old", []string{"a"}, seen)
			require.Eventually(t, func() bool { return hfActive(older) }, 5*time.Second, 5*time.Millisecond)

			failing.Store(true)
			newer := hfStart(t, hfSource{Store: st, rows: newerRows}, "b-new", []string{"a", "b"}, seen)
			require.Eventually(t, func() bool {
				return len(older.Status().Members) == 2 && len(newer.Status().Members) == 2 && !hfActive(older) && hfActive(newer) == tc.newerDelivers
			}, 5*time.Second, 5*time.Millisecond, "older: members %v, assigned %v, active %v; newer: members %v, assigned %v, active %v",
				older.Status().Members, older.Status().Assigned, hfActive(older), newer.Status().Members, newer.Status().Assigned, hfActive(newer))
			hfAppend(t, st, "s-1", "b")
			hfAppend(t, st, "s-1", "a")

			failing.Store(false)
			require.Eventually(t, func() bool { return hfActive(newer) && !hfActive(older) }, 5*time.Second, 5*time.Millisecond)
			hfAppend(t, st, "s-2", "a")
			require.Eventually(t, func() bool { return seen.has("b-new:a") }, 5*time.Second, 5*time.Millisecond)
			require.True(t, seen.has("b-new:b"), "the newer build's event b was delivered by nobody: seen %v", seen.list())
		})
	}
}

// TestHandlesRowsOfDeadMembersAreRemoved: a process that died without
// leaving keeps its record; the live members remove it once it is older
// than three lease TTLs, and keep a young one (a member about to join
// writes its record before its first heartbeat). Neither counts while its
// member is not live.
func TestHandlesRowsOfDeadMembersAreRemoved(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	st, err := memstore.New(nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = st.Close() })
	put := func(key, member string, at time.Time) {
		b, err := json.Marshal(map[string]any{"member": member, "handles": []string{"type:z"}, "at": at})
		require.NoError(t, err)
		require.NoError(t, st.Rows().Put(ctx, feed.RuntimeNamespace, feed.MembersHandleTable, "rolling/"+key, b, events.Token{}))
	}
	put("dead", "gone/1", time.Now().Add(-time.Hour))
	put("joining", "soon/1", time.Now().Add(time.Hour))
	p := hfStart(t, st, "alive", []string{"a"}, &hfSeen{})
	require.Eventually(t, func() bool {
		_, found, err := st.Rows().Get(ctx, feed.RuntimeNamespace, feed.MembersHandleTable, "rolling/dead", feed.LockNone)
		return err == nil && !found && hfActive(p)
	}, 5*time.Second, 5*time.Millisecond, "the dead member's old record was not removed, or its handles counted")
	_, found, err := st.Rows().Get(ctx, feed.RuntimeNamespace, feed.MembersHandleTable, "rolling/joining", feed.LockNone)
	require.NoError(t, err)
	require.True(t, found, "a young record of a member not yet live was removed")
}
