package memstore

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/signal"
)

// Compile-time checks that Store is a drop-in for the PostgreSQL store.
var (
	_ events.Store           = (*Store)(nil)
	_ feed.Source            = (*Store)(nil)
	_ feed.CheckpointWatcher = (*Store)(nil)
	_ feed.Inspector         = (*Store)(nil)
)

// Config configures a Store. The zero value (or a nil *Config) is ready to
// use.
type Config struct {
	// Registry maps Go types to stored type names. Tests that run the
	// eventstoretest suite must pass eventstoretest.Registry(). Defaults to
	// a new, empty registry, which accepts only events.Raw data.
	Registry *events.Registry
	// Limits bounds what one append may contain. Zero fields default as in
	// events.Limits: MaxPayloadBytes defaults to events.DefaultMaxPayloadBytes
	// (1 MiB) and MaxEventsPerAppend to events.DefaultMaxEventsPerAppend.
	Limits events.Limits
	// Clock stamps RecordedAt and judges lease expiry. Replace it to test
	// lease takeovers without waiting. Defaults to events.SystemClock.
	Clock events.Clock
}

func (c *Config) withDefaults() Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.Registry == nil {
		out.Registry = events.NewRegistry()
	}
	// cmp.Or only fills zeros, so a negative limit survives to validate and
	// is reported instead of being silently replaced.
	out.Limits.MaxPayloadBytes = cmp.Or(out.Limits.MaxPayloadBytes, events.DefaultMaxPayloadBytes)
	out.Limits.MaxEventsPerAppend = cmp.Or(out.Limits.MaxEventsPerAppend, events.DefaultMaxEventsPerAppend)
	if out.Clock == nil {
		out.Clock = events.SystemClock{}
	}
	return out
}

func (c *Config) validate() error {
	if c.Limits.MaxPayloadBytes < 0 {
		return fmt.Errorf("memstore: Config.Limits.MaxPayloadBytes is %d: use 0 for the default or a positive byte count", c.Limits.MaxPayloadBytes)
	}
	if c.Limits.MaxEventsPerAppend < 0 {
		return fmt.Errorf("memstore: Config.Limits.MaxEventsPerAppend is %d: use 0 for the default or a positive count", c.Limits.MaxEventsPerAppend)
	}
	return nil
}

// Store is an in-memory event store with the same semantics as the
// PostgreSQL store: atomic appends with optimistic concurrency, a gap-free
// global order, a feed with category filtering, and leased checkpoints.
//
// A Store is safe for concurrent use. Everything is lost when the process
// exits.
type Store struct {
	cfg    Config
	closed atomic.Bool

	mu sync.RWMutex
	// log is the global order: log[i] has token MakeToken(i+1, i+1).
	log []events.Envelope
	// streams maps a stream id to the indexes of its events in log.
	streams map[string][]int
	// ids maps every event id ever appended to its index in log, so a
	// retried append is recognised.
	ids map[string]int

	wake        signal.Broadcast
	checkpoints *checkpointStore
}

// New returns an empty Store.
func New(cfg *Config) (*Store, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:     c,
		streams: map[string][]int{},
		ids:     map[string]int{},
	}
	s.checkpoints = newCheckpointStore(c.Clock, &s.closed)
	return s, nil
}

// Close makes every later call fail with events.ErrClosed and wakes feed
// readers so they notice. Closing twice is harmless.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.wake.Notify()
	return nil
}

// Registry returns the type registry the store encodes with.
func (s *Store) Registry() *events.Registry { return s.cfg.Registry }

// check fails when the store is closed or ctx is done, before any work.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	return ctx.Err()
}

// Append appends evs atomically to streamID if the stream meets expected.
// Input is validated and encoded before the store is locked, so a bad event
// fails the whole append and nothing is written.
func (s *Store) Append(ctx context.Context, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	if err := s.check(ctx); err != nil {
		return events.AppendResult{}, err
	}
	recs, err := events.Prepare(s.cfg.Registry, s.cfg.Limits, streamID, expected, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	// Copy what the caller could still mutate, so stored events never change.
	for i := range recs {
		recs[i].Raw.Payload = cloneBytes(recs[i].Raw.Payload)
		recs[i].Metadata.Extra = maps.Clone(recs[i].Metadata.Extra)
	}
	// PostgreSQL's timestamptz keeps microseconds; truncating here keeps
	// tests written against memstore passing on PostgreSQL. Truncate also
	// drops the monotonic reading, so RecordedAt compares with ==.
	now := s.cfg.Clock.Now().Truncate(time.Microsecond)

	res, err := s.appendLocked(streamID, expected, recs, now)
	if err != nil {
		return events.AppendResult{}, err
	}
	s.wake.Notify()
	return res, nil
}

func (s *Store) appendLocked(streamID string, expected events.ExpectedVersion, recs []events.Record, now time.Time) (events.AppendResult, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Checked again under the lock: Close may have won the race.
	if s.closed.Load() {
		return events.AppendResult{}, errClosed
	}
	// Ids first: an append of events already stored is judged as a retry
	// (the original result, or ErrDuplicateEvent), never as a conflict.
	var stored []events.Envelope
	for _, r := range recs {
		if i, dup := s.ids[r.ID]; dup {
			stored = append(stored, s.log[i])
		}
	}
	if res, found, err := events.MatchStored(streamID, expected, recs, stored); found {
		return res, err
	}
	idx := s.streams[streamID]
	actual := int64(len(idx))
	if !expected.Satisfied(actual) {
		return events.AppendResult{}, &events.WrongExpectedVersionError{StreamID: streamID, Expected: expected, Actual: actual}
	}
	res := events.AppendResult{
		StreamID:     streamID,
		FirstVersion: actual + 1,
		EventIDs:     make([]string, 0, len(recs)),
		Tokens:       make([]events.Token, 0, len(recs)),
	}
	for i, r := range recs {
		seq := uint64(len(s.log)) + 1
		env := events.Envelope{
			ID:            r.ID,
			StreamID:      streamID,
			Version:       actual + int64(i) + 1,
			Type:          r.Raw.Type,
			SchemaVersion: r.Raw.SchemaVersion,
			Payload:       r.Raw.Payload,
			Metadata:      r.Metadata,
			RecordedAt:    now,
			Token:         events.MakeToken(seq, seq),
		}
		s.log = append(s.log, env)
		idx = append(idx, len(s.log)-1)
		s.ids[r.ID] = len(s.log) - 1
		res.LastVersion = env.Version
		res.Token = env.Token
		res.EventIDs = append(res.EventIDs, r.ID)
		res.Tokens = append(res.Tokens, env.Token)
	}
	s.streams[streamID] = idx
	return res, nil
}

// ReadStream returns up to limit events of streamID with version >=
// fromVersion, oldest first. limit <= 0 means no limit. A stream without
// events reads as empty, not as an error.
func (s *Store) ReadStream(ctx context.Context, streamID string, fromVersion int64, limit int) ([]events.Envelope, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if err := events.ValidateStreamID(streamID); err != nil {
		return nil, err
	}
	if err := events.ValidateFromVersion(fromVersion); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	idx := s.streams[streamID]
	// Versions start at 1 and are contiguous, so version v sits at v-1.
	start := max(fromVersion, 1) - 1
	if start >= int64(len(idx)) {
		return []events.Envelope{}, nil
	}
	idx = idx[start:]
	if limit > 0 && limit < len(idx) {
		idx = idx[:limit]
	}
	out := make([]events.Envelope, len(idx))
	for i, j := range idx {
		out[i] = cloneEnvelope(s.log[j])
	}
	return out, nil
}

// StreamVersion returns the number of events in streamID.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	if err := events.ValidateStreamID(streamID); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int64(len(s.streams[streamID])), nil
}

// ReadAll returns up to limit events strictly after the token, in global
// order. limit <= 0 means events.DefaultReadLimit.
func (s *Store) ReadAll(ctx context.Context, after events.Token, limit int) ([]events.Envelope, error) {
	return s.read(ctx, after, "", limit)
}

// Head returns the token of the newest event, or the zero token.
func (s *Store) Head(ctx context.Context) (events.Token, error) {
	if err := s.check(ctx); err != nil {
		return events.Token{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if len(s.log) == 0 {
		return events.Token{}, nil
	}
	return s.log[len(s.log)-1].Token, nil
}

// read serves ReadAll and ReadFeed. An empty category keeps every event.
func (s *Store) read(ctx context.Context, after events.Token, category string, limit int) ([]events.Envelope, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	if limit <= 0 {
		limit = events.DefaultReadLimit
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	// Tokens only grow along the log, so the first event after the token is
	// found by binary search. Any token works, including ones minted by
	// another store.
	start := sort.Search(len(s.log), func(i int) bool { return s.log[i].Token.After(after) })
	out := make([]events.Envelope, 0, min(limit, len(s.log)-start))
	for _, env := range s.log[start:] {
		if len(out) == limit {
			break
		}
		if category != "" && !inCategory(env.StreamID, category) {
			continue
		}
		out = append(out, cloneEnvelope(env))
	}
	return out, nil
}

// cloneEnvelope copies what a reader could mutate, so readers never see
// each other's changes or corrupt the store.
func cloneEnvelope(env events.Envelope) events.Envelope {
	env.Payload = cloneBytes(env.Payload)
	env.Metadata.Extra = maps.Clone(env.Metadata.Extra)
	return env
}

func cloneBytes(b json.RawMessage) json.RawMessage {
	if b == nil {
		return nil
	}
	return append(json.RawMessage(nil), b...)
}

// errClosed is what every call returns after Close.
var errClosed = fmt.Errorf("memstore: %w: the store was closed (create a new one)", events.ErrClosed)
