package feedtest

import (
	"context"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// failingHandleRows fails List calls on feed.MembersHandleTable until a deadline
// (a transient error at the process's start).
type failingHandleRows struct {
	feed.Rows
	until time.Time
	n     *atomic.Int32
}

func (r failingHandleRows) List(ctx context.Context, ns, table string, q feed.RowQuery) ([]feed.Row, error) {
	if table == feed.MembersHandleTable && time.Now().Before(r.until) {
		r.n.Add(1)
		return nil, errors.New("injected: rows unavailable")
	}
	return r.Rows.List(ctx, ns, table, q)
}

// failingHandlesSource is src with failingHandleRows, still announcing membership and
// listing its consumers.
type failingHandlesSource struct {
	feed.Source
	feed.MembershipWatcher
	feed.Inspector
	rows failingHandleRows
}

func (s failingHandlesSource) Rows() feed.Rows { return s.rows }

// withoutMembershipPush is src without membership announcements (a LISTEN connection
// that is down): the process learns of others at its heartbeat.
type withoutMembershipPush struct{ feed.Source }

// testProcessorAwaitTakeoverAfterAFailedRead: the newer build's first
// reads of what the members handle fail for a while. AwaitTakeover waits
// until it has read them and taken over (it returned nil at once, the
// older process still delivering, and an event only the newer build
// handles, appended after it returned, was filtered out for good).
func testProcessorAwaitTakeoverAfterAFailedRead(t *testing.T, m mode, s events.Store, src feed.Source) {
	name := uniqueName("takeread")
	var mu sync.Mutex
	var seen []string
	h := func(who string) feed.Handler {
		return func(_ context.Context, env events.Envelope) error {
			mu.Lock()
			seen = append(seen, who+":"+env.Type)
			mu.Unlock()
			return nil
		}
	}
	has := func(x string) bool { mu.Lock(); defer mu.Unlock(); return slices.Contains(seen, x) }
	cfg := func(types ...string) *feed.ProcessorConfig {
		c := procConfig(name, 1)
		c.Types = types
		c.Subscriber.LeaseTTL, c.Subscriber.RenewInterval = 6*time.Second, 2*time.Second
		return c
	}
	active := func(p *feed.Processor) bool { return p.Status().Partitions[0].State == feed.PartitionActive }
	older := startProcessor(t, m, withoutMembershipPush{src}, cfg("rv.a"), h("older"))
	require.Eventually(t, func() bool { return active(older.p) }, waitTimeout, 5*time.Millisecond)

	var n atomic.Int32
	w, _ := src.(feed.MembershipWatcher)
	insp, _ := src.(feed.Inspector)
	newer := startProcessor(t, m, failingHandlesSource{Source: src, MembershipWatcher: w, Inspector: insp, rows: failingHandleRows{Rows: src.Rows(), until: time.Now().Add(500 * time.Millisecond), n: &n}}, cfg("rv.a", "rv.b"), h("newer"))
	ctx, cancel := context.WithTimeout(t.Context(), 12*time.Second)
	defer cancel()
	require.NoError(t, newer.p.AwaitTakeover(ctx))
	st := newer.p.Status()
	require.Positive(t, n.Load(), "the reads failed")
	require.True(t, active(newer.p), "AwaitTakeover returned before the newer process delivered (assigned %v; older active %v)", st.Assigned, active(older.p))

	raw := func(typ string) events.Event {
		return events.Event{Data: events.Raw{Type: typ, Payload: []byte(`{}`)}}
	}
	_, err := s.Append(t.Context(), name+"-1", events.AnyVersion, raw("rv.b"), raw("rv.a"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return active(newer.p) && !active(older.p) }, waitTimeout, 5*time.Millisecond)
	_, err = s.Append(t.Context(), name+"-2", events.AnyVersion, raw("rv.a"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return has("newer:rv.a") }, waitTimeout, 5*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	require.Contains(t, seen, "newer:rv.b", "the newer build's event, appended after AwaitTakeover returned, was delivered by nobody: seen %v", seen)
}
