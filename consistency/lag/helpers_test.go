package lag_test

import (
	"bytes"
	"context"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/clocktest"
)

// t0 is when every fake test world begins.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// fakeClock is a clock tests move by hand.
type fakeClock = clocktest.Clock

// fakeStore is a feed.Inspector over a log the test writes directly.
type fakeStore struct {
	clock *fakeClock

	mu        sync.Mutex
	log       []time.Time // log[i] is event i+1's RecordedAt; its token is MakeToken(i+1, i+1)
	consumers map[string]feed.ConsumerInfo
	horizon   time.Duration
	err       error
}

func newFakeStore(clock *fakeClock) *fakeStore {
	return &fakeStore{clock: clock, consumers: map[string]feed.ConsumerInfo{}}
}

func token(i int) events.Token { return events.MakeToken(uint64(i), uint64(i)) }

// append records n events now and returns the token of the last.
func (s *fakeStore) append(n int) events.Token {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.log = append(s.log, s.clock.Now())
	}
	return token(len(s.log))
}

// commit moves name's checkpoint to pos and beats its heart now.
func (s *fakeStore) commit(name string, pos events.Token) { s.commitBy(name, "runner-1", pos) }

// commitBy is commit by the runner owner.
func (s *fakeStore) commitBy(name, owner string, pos events.Token) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.consumers[name]
	c.Name, c.Owner, c.Position = name, owner, pos
	c.HeartbeatAt, c.UpdatedAt = s.clock.Now(), s.clock.Now()
	s.consumers[name] = c
}

func (s *fakeStore) remove(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.consumers, name)
}

func (s *fakeStore) setHorizon(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.horizon = d
}

func (s *fakeStore) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *fakeStore) Head(ctx context.Context) (events.Token, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return events.Token{}, err // as a real store's query
	}
	return token(len(s.log)), s.err
}

func (s *fakeStore) CountBetween(_ context.Context, after, upTo events.Token) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !after.Before(upTo) {
		return 0, s.err
	}
	return int64(upTo.Major() - after.Major()), s.err
}

func (s *fakeStore) OldestAfter(_ context.Context, after events.Token) (time.Time, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := int(after.Major()) // index of the first event after `after`
	if i >= len(s.log) {
		return time.Time{}, false, s.err
	}
	return s.log[i], true, s.err
}

func (s *fakeStore) Consumers(context.Context) ([]feed.ConsumerInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]feed.ConsumerInfo, 0, len(s.consumers))
	for _, c := range s.consumers {
		out = append(out, c)
	}
	// Unsorted on purpose: the Monitor sorts.
	slices.Reverse(out)
	return out, s.err
}

func (s *fakeStore) HorizonAge(context.Context) (time.Duration, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.horizon, s.err
}

var _ feed.Inspector = (*fakeStore)(nil)

// hookLog records the hooks a Monitor fired.
type hookLog struct {
	mu        sync.Mutex
	breaches  []lag.Breach
	recovered []lag.Breach
}

func (h *hookLog) onBreach(b lag.Breach) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.breaches = append(h.breaches, b)
}

func (h *hookLog) onRecover(b lag.Breach) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recovered = append(h.recovered, b)
}

func (h *hookLog) counts() (breaches, recovered int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.breaches), len(h.recovered)
}

// syncBuffer is a log sink safe for the loop's goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type bundle struct {
	mon   *lag.Monitor
	store *fakeStore
	clock *fakeClock
	reg   *prometheus.Registry
	hooks *hookLog
	logs  *syncBuffer
}

// setup returns a Monitor over a fake store with its own registry, fake
// clock, hook recorder and log buffer. cfg may set Projections and rules;
// setup fills in the collaborators.
func setup(t *testing.T, cfg *lag.Config) bundle {
	t.Helper()
	clock := clocktest.New(t0)
	b := bundle{
		store: newFakeStore(clock),
		clock: clock,
		reg:   prometheus.NewRegistry(),
		hooks: &hookLog{},
		logs:  &syncBuffer{},
	}
	c := lag.Config{}
	if cfg != nil {
		c = *cfg
	}
	c.Clock = clock
	c.Registerer = b.reg
	c.OnBreach = b.hooks.onBreach
	c.OnRecover = b.hooks.onRecover
	c.Logger = slog.New(slog.NewTextHandler(b.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	mon, err := lag.NewMonitor(b.store, &c)
	require.NoError(t, err)
	b.mon = mon
	return b
}

// check runs one pass and returns the report of name.
func (b bundle) check(t *testing.T, name string) lag.Report {
	t.Helper()
	reports, err := b.mon.Check(t.Context())
	require.NoError(t, err)
	for _, r := range reports {
		if r.Name == name {
			return r
		}
	}
	require.Failf(t, "no report", "the pass reported no projection %q: %+v", name, reports)
	return lag.Report{}
}

// metric reads one series from the bundle's registry: a gauge or a
// counter, of projection (or unlabelled when projection is "").
func (b bundle) metric(t *testing.T, name, projection string) float64 {
	t.Helper()
	mfs, err := b.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			got := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "projection" {
					got = l.GetValue()
				}
			}
			if got != projection {
				continue
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	require.Failf(t, "no series", "%s{projection=%q} is not registered", name, projection)
	return 0
}
