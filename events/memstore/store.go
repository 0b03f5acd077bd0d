package memstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/appendhook"
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
// global order, a filtered feed, leased checkpoints, units of work and rows.
//
// A Store is safe for concurrent use. Everything is lost when the process
// exits.
type Store struct {
	cfg      Config
	closed   atomic.Bool
	closedCh chan struct{}

	// mu guards the events, the rows and every unit's state. A unit's
	// commit takes checkpoints.mu after it, never before.
	mu sync.RWMutex
	// log is the committed global order, sorted by token. Tokens are
	// MakeToken(seq, seq); a rolled-back unit leaves its seqs unused.
	// It holds pointers: a unit commits behind the events committed since
	// its reservation, and its inserts shift those, and growth copies the
	// whole log, a word an event instead of a whole envelope with the
	// garbage collector's barrier on each of its pointers.
	log []*events.Envelope
	// streams holds each stream's committed events in version order.
	streams map[string][]events.Envelope
	// ids maps every committed event id to where it is stored, so a
	// retried append is recognised; reserved holds those of open units.
	ids      map[string]eventRef
	reserved map[string]struct{}
	// nextSeq is the next seq an append reserves.
	nextSeq uint64
	// open holds the units that reserved seqs and have not ended: the
	// smallest of their first seqs bounds what readers see.
	open map[*unit]struct{}
	// owners names the unit holding each stream it appended to, until it
	// ends; other appends to the stream that would write wait, as
	// PostgreSQL makes them wait on the holder's uncommitted next version.
	owners map[string]*unit
	rows   rowStore
	// index lists the committed events by type and category root, for
	// filtered reads.
	index feedIndex

	hooks       appendhook.Set
	wake        signal.Broadcast
	checkpoints *checkpointStore
	groups      signal.Watchers[string] // membership announcements
}

// New returns an empty Store.
func New(cfg *Config) (*Store, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:      c,
		closedCh: make(chan struct{}),
		streams:  map[string][]events.Envelope{},
		ids:      map[string]eventRef{},
		reserved: map[string]struct{}{},
		nextSeq:  1,
		open:     map[*unit]struct{}{},
		owners:   map[string]*unit{},
		rows:     newRowStore(),
		index:    newFeedIndex(),
	}
	s.checkpoints = newCheckpointStore(s, c.Clock, &s.closed)
	return s, nil
}

// Close makes every later call fail with events.ErrClosed and wakes feed
// readers so they notice. Closing twice is harmless.
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	close(s.closedCh)
	s.wake.Notify()
	return nil
}

// Registry returns the type registry the store encodes with.
func (s *Store) Registry() *events.Registry { return s.cfg.Registry }

// Limits returns the limits appends are held to, defaults filled in:
// callers that build events ahead of an append (a saga step) check them
// first.
func (s *Store) Limits() events.Limits { return s.cfg.Limits.WithDefaults() }

// check fails when the store is closed or ctx is done, before any work.
func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed
	}
	return ctx.Err()
}

// checkInput is check for a call whose input validated to invalid (nil
// when good): bad input is reported before a done context, as on
// PostgreSQL, which refuses it before any SQL runs.
func (s *Store) checkInput(ctx context.Context, invalid error) error {
	if s.closed.Load() {
		return errClosed
	}
	if invalid != nil {
		return invalid
	}
	return ctx.Err()
}

// validateStreamRead checks the arguments of ReadStream.
func validateStreamRead(streamID string, fromVersion int64) error {
	if err := events.ValidateStreamID(streamID); err != nil {
		return err
	}
	return events.ValidateFromVersion(fromVersion)
}

// Append appends evs atomically to streamID if the stream meets expected.
// Input is validated and encoded before the store is locked, so a bad event
// fails the whole append and nothing is written. While a unit that appended
// to the stream is open, expected is judged on the committed events: an
// append they do not meet fails at once, and one they meet waits for the
// unit to end and is judged again (see events.Unit). When an AppendHook
// wants the events, the append runs in a unit of its own.
func (s *Store) Append(ctx context.Context, streamID string, expected events.ExpectedVersion, evs ...events.Event) (events.AppendResult, error) {
	// The context is checked once the input is (appendRecs, unit.Append).
	if s.closed.Load() {
		return events.AppendResult{}, errClosed
	}
	if err := events.CheckReserved(evs); err != nil {
		return events.AppendResult{}, err
	}
	if s.hooks.Wanted(s.cfg.Registry, evs) {
		return s.appendInOwnUnit(ctx, streamID, expected, evs)
	}
	res, err := s.appendRecs(ctx, nil, streamID, expected, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	s.wake.Notify()
	return res, nil
}

// appendInOwnUnit runs a hooked append in a unit that commits at once. A
// commit that conflicts with a concurrent unit (a hook read a row with a
// lock that changed meanwhile) wrote nothing, so the append runs again:
// on PostgreSQL the same append would have waited for the other unit
// instead, and the caller must not see a difference.
func (s *Store) appendInOwnUnit(ctx context.Context, streamID string, expected events.ExpectedVersion, evs []events.Event) (events.AppendResult, error) {
	for attempt := 1; ; attempt++ {
		u := s.newUnit()
		res, err := u.Append(ctx, streamID, expected, evs...)
		if err != nil {
			_ = u.Rollback(ctx)
			return events.AppendResult{}, err
		}
		err = u.Commit(ctx)
		if err == nil {
			return res, nil
		}
		if !errors.Is(err, feed.ErrConflict) || attempt >= maxConflictAttempts || ctx.Err() != nil {
			return events.AppendResult{}, err
		}
		// Each conflict means another unit committed. Many appenders of
		// one strong projection (its lock row) conflict again and again:
		// past a few runs, a random pause that grows with the runs lets
		// the others through, as waiting does on PostgreSQL.
		if attempt > 3 {
			pause := time.Duration(rand.Int64N(int64(min(time.Duration(attempt)*20*time.Microsecond, 2*time.Millisecond)) + 1))
			select {
			case <-time.After(pause):
			case <-ctx.Done():
				return events.AppendResult{}, err
			}
		}
	}
}

// maxConflictAttempts bounds the runs of an append whose own unit keeps
// conflicting (with the pauses between them, a second or two).
const maxConflictAttempts = 1000

// appendRecs validates and stores evs: committed at once when u is nil,
// else reserved for u until it ends. Bad input is refused before a done
// context, as on PostgreSQL.
func (s *Store) appendRecs(ctx context.Context, u *unit, streamID string, expected events.ExpectedVersion, evs []events.Event) (events.AppendResult, error) {
	recs, err := events.Prepare(s.cfg.Registry, s.cfg.Limits, streamID, expected, evs)
	if err != nil {
		return events.AppendResult{}, err
	}
	if err := ctx.Err(); err != nil {
		return events.AppendResult{}, err
	}
	// Copy what the caller could still mutate, so stored events never change.
	for i := range recs {
		recs[i].Raw.Payload = cloneBytes(recs[i].Raw.Payload)
		recs[i].Metadata.Extra = maps.Clone(recs[i].Metadata.Extra)
	}
	var (
		res     events.AppendResult
		judged  bool
		verdict error
	)
	err = s.lockStream(ctx, u, streamID, func() bool {
		res, judged, verdict = s.judgeLocked(u, streamID, expected, recs)
		return judged
	})
	if err != nil {
		return events.AppendResult{}, err
	}
	defer s.mu.Unlock()
	if judged {
		return res, verdict
	}
	// Stamped under s.mu, where the events take their tokens, so that feed
	// order is time order: stamped before a wait for another unit's stream,
	// an event would sit in the feed after younger ones, and the lag
	// monitor, which times the first unprocessed event, would miss it.
	// PostgreSQL's timestamptz keeps microseconds; truncating here keeps
	// tests written against memstore passing on PostgreSQL. Truncate also
	// drops the monotonic reading, so RecordedAt compares with ==.
	return s.appendLocked(u, streamID, recs, s.cfg.Clock.Now().Truncate(time.Microsecond))
}

// lockStream takes s.mu once no other unit holds streamID, waiting for the
// holder to end, as PostgreSQL makes an appender wait on the holder's
// uncommitted next version of the stream. judged is called with s.mu held
// before every decision to wait: when it reports that the append has its
// answer already (see judgeLocked), lockStream returns at once.
func (s *Store) lockStream(ctx context.Context, u *unit, streamID string, judged func() bool) error {
	for {
		s.mu.Lock()
		if s.closed.Load() {
			s.mu.Unlock()
			return errClosed
		}
		if u != nil && u.done {
			s.mu.Unlock()
			return events.ErrUnitEnded
		}
		if u != nil {
			u.waitsFor = nil
		}
		if judged() {
			return nil
		}
		owner := s.owners[streamID]
		if owner == nil || owner == u {
			return nil
		}
		if u != nil {
			// Two units appending to the same streams in different orders
			// would each wait for the other for ever. PostgreSQL finds
			// such a cycle and aborts one of the transactions; so does
			// memory, with the waiter that closes it.
			for o := owner; o != nil; o = o.waitsFor {
				if o == u {
					s.mu.Unlock()
					return fmt.Errorf("memstore: append to %q: %w: it waits for an open unit that waits, in turn, for this one (roll the unit back and run it again)", streamID, errDeadlock)
				}
			}
			u.waitsFor = owner
		}
		ended := owner.ended
		s.mu.Unlock()
		select {
		case <-ended:
		case <-s.closedCh:
		case <-ctx.Done():
			if u != nil {
				s.mu.Lock()
				u.waitsFor = nil
				s.mu.Unlock()
			}
			return fmt.Errorf("memstore: append to %q waited for an open unit that appended to it: %w", streamID, ctx.Err())
		}
	}
}

// errDeadlock is a unit's append that would wait for ever, in a cycle of
// units each waiting for the next. Like PostgreSQL's deadlock error it
// aborts the unit, which can only roll back; it wraps feed.ErrConflict,
// a conflict the runtime retries.
var errDeadlock = fmt.Errorf("deadlock: %w", feed.ErrConflict)

// judgeLocked answers an append without writing when it can: a retry of
// stored events (their original result, or ErrDuplicateEvent), or an
// expectation the stream does not meet. The expectation is judged on the
// committed events and the appending unit's own, never on another open
// unit's: an append that fails it fails at once, as on PostgreSQL, whose
// statement judges it on committed rows, and only an append that would
// write waits for such a unit, to be judged again once it ended (see
// lockStream). The caller holds s.mu.
func (s *Store) judgeLocked(u *unit, streamID string, expected events.ExpectedVersion, recs []events.Record) (events.AppendResult, bool, error) {
	// Ids first: an append of events already stored is judged as a retry
	// (the original result, or ErrDuplicateEvent), never as a conflict.
	var stored []events.Envelope
	for _, r := range recs {
		if ref, dup := s.ids[r.ID]; dup {
			stored = append(stored, s.streams[ref.stream][ref.index])
		} else if env, ok := u.holds(r.ID); ok {
			// The unit's own appends count as stored for it, as a
			// transaction sees its own rows on PostgreSQL.
			stored = append(stored, env)
		}
	}
	if res, found, err := events.MatchStored(streamID, expected, recs, stored); found {
		return res, true, err
	}
	if actual := s.versionFor(u, streamID); !expected.Satisfied(actual) {
		return events.AppendResult{}, true, &events.WrongExpectedVersionError{StreamID: streamID, Expected: expected, Actual: actual}
	}
	return events.AppendResult{}, false, nil
}

// versionFor is streamID's version as u sees it: committed events and u's
// own. The caller holds s.mu.
func (s *Store) versionFor(u *unit, streamID string) int64 {
	actual := int64(len(s.streams[streamID]))
	if u != nil {
		actual += int64(len(u.pending[streamID]))
	}
	return actual
}

// appendLocked stores the records judgeLocked let through, after the
// stream's version as u sees it, unless another open unit holds one of
// their ids. The caller holds s.mu, and no other unit holds the stream.
func (s *Store) appendLocked(u *unit, streamID string, recs []events.Record, now time.Time) (events.AppendResult, error) {
	for _, r := range recs {
		if _, mine := u.holds(r.ID); mine {
			continue
		}
		if _, held := s.reserved[r.ID]; held {
			return events.AppendResult{}, fmt.Errorf("%w: %w: event id %s is held by an open unit of work (append it again once that unit ends: a retry of the same events then returns their result)",
				events.ErrDuplicateEvent, errHeldByUnit, r.ID)
		}
	}
	actual := s.versionFor(u, streamID)
	res := events.AppendResult{
		StreamID:     streamID,
		FirstVersion: actual + 1,
		EventIDs:     make([]string, 0, len(recs)),
		Tokens:       make([]events.Token, 0, len(recs)),
	}
	envs := make([]events.Envelope, 0, len(recs))
	for i, r := range recs {
		seq := s.nextSeq
		s.nextSeq++
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
		envs = append(envs, env)
		res.LastVersion = env.Version
		res.Token = env.Token
		res.EventIDs = append(res.EventIDs, r.ID)
		res.Tokens = append(res.Tokens, env.Token)
	}
	if u == nil {
		// The newest seqs: they go at the end of the log.
		s.commitEvents(envs)
		return res, nil
	}
	u.reserve(streamID, envs)
	return res, nil
}

// errHeldByUnit marks a duplicate id that another open unit reserved: on
// PostgreSQL the insert would then end in a unique violation that aborts
// the transaction, so a unit that meets it fails the same way. A duplicate
// of a committed event is found before anything is written, on both
// stores, and leaves the unit usable.
var errHeldByUnit = errors.New("held by an open unit")

// eventRef says where a committed event is: its stream and its index in
// the stream's slice (its version - 1).
type eventRef struct {
	stream string
	index  int
}

// commitEvents adds envs (one stream's, in version order) to the committed
// log. The caller holds s.mu.
func (s *Store) commitEvents(envs []events.Envelope) {
	for _, env := range envs {
		// A unit's seqs may be older than events committed since, so
		// insert in token order.
		i := sort.Search(len(s.log), func(i int) bool { return s.log[i].Token.After(env.Token) })
		s.log = slices.Insert(s.log, i, &env)
		s.ids[env.ID] = eventRef{stream: env.StreamID, index: len(s.streams[env.StreamID])}
		s.streams[env.StreamID] = append(s.streams[env.StreamID], env)
		s.index.add(env)
	}
}

// ReadStream returns up to limit events of streamID with version >=
// fromVersion, oldest first. limit <= 0 means no limit. A stream without
// events reads as empty, not as an error.
func (s *Store) ReadStream(ctx context.Context, streamID string, fromVersion int64, limit int) ([]events.Envelope, error) {
	if err := s.checkInput(ctx, validateStreamRead(streamID, fromVersion)); err != nil {
		return nil, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return sliceStream(s.streams[streamID], nil, fromVersion, limit), nil
}

// sliceStream returns copies of the events of committed followed by own
// (a unit's pending events of the stream) from fromVersion on.
func sliceStream(committed, own []events.Envelope, fromVersion int64, limit int) []events.Envelope {
	all := committed
	if len(own) > 0 {
		all = slices.Concat(committed, own)
	}
	// Versions start at 1 and are contiguous, so version v sits at v-1.
	start := max(fromVersion, 1) - 1
	if start >= int64(len(all)) {
		return []events.Envelope{}
	}
	all = all[start:]
	if limit > 0 && limit < len(all) {
		all = all[:limit]
	}
	out := make([]events.Envelope, len(all))
	for i, env := range all {
		out[i] = cloneEnvelope(env)
	}
	return out
}

// StreamVersion returns the number of events in streamID.
func (s *Store) StreamVersion(ctx context.Context, streamID string) (int64, error) {
	if err := s.checkInput(ctx, events.ValidateStreamID(streamID)); err != nil {
		return 0, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int64(len(s.streams[streamID])), nil
}

// ReadAll returns up to limit events strictly after the token, in global
// order. limit <= 0 means events.DefaultReadLimit.
func (s *Store) ReadAll(ctx context.Context, after events.Token, limit int) ([]events.Envelope, error) {
	b, err := s.read(ctx, after, feed.Filter{}, limit)
	return b.Events, err
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
