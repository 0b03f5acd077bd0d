package pgstore

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/appendhook"
	"github.com/converge-es/converge/internal/signal"
	"github.com/converge-es/converge/migrations"
)

const (
	// DefaultListenReconnectDelay is how long the listener waits before
	// reconnecting after its connection drops.
	DefaultListenReconnectDelay = 500 * time.Millisecond
	// DefaultNotifyMinInterval is the default Config.NotifyMinInterval.
	DefaultNotifyMinInterval = time.Millisecond
	// NotifyChannel is the PostgreSQL channel every converge store notifies
	// on; payloads name the schema, so stores of different schemas share it.
	NotifyChannel = "converge"
)

// Config configures a Store.
type Config struct {
	// Schema is the PostgreSQL schema holding converge's tables. Defaults to
	// migrations.DefaultSchema ("converge").
	Schema string
	// Registry encodes and decodes event types. Defaults to an empty
	// registry, which accepts only events.Raw.
	Registry *events.Registry
	// Limits bounds appends. Zero fields default as in events.Limits (1 MiB
	// payloads, 1000 events per append); a negative one is refused.
	Limits events.Limits
	// AppendRetry bounds Append's own retries of transient failures.
	// Defaults to the AppendRetry defaults (up to 10 attempts within 10s).
	AppendRetry AppendRetry
	// Logger receives background errors (lost listen connection, failed
	// notifications). Defaults to slog.Default().
	Logger *slog.Logger
	// ListenReconnectDelay is the pause before the listener reconnects.
	// Defaults to DefaultListenReconnectDelay.
	ListenReconnectDelay time.Duration
	// NotifyMinInterval is the least time between two NOTIFYs this store
	// sends after commits. The first change after a quiet spell is
	// announced at once; changes committed within the interval share the
	// next notification. It bounds the NOTIFY rate (each is a statement and
	// a database-wide lock) under heavy appending, at the price of up to
	// this much extra cross-process latency then. Defaults to
	// DefaultNotifyMinInterval (1ms); negative means no minimum.
	NotifyMinInterval time.Duration
	// DisableListen turns push wake-ups off: feed subscribers then poll.
	// Such a store cannot tell that the server restarted, so it also
	// remembers no stream heads and every Append reads its stream's head.
	// Defaults to false.
	DisableListen bool
	// SkipSchemaCheck skips New's checks of the database: that the schema
	// is migrated, that the server is PostgreSQL 13 or later, that the
	// pool's transactions default to READ COMMITTED, and that its
	// client_encoding and the database's encoding are UTF8. Defaults to
	// false.
	SkipSchemaCheck bool
}

func (c *Config) withDefaults() Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	out.Schema = cmp.Or(out.Schema, migrations.DefaultSchema)
	if out.Registry == nil {
		out.Registry = events.NewRegistry()
	}
	// cmp.Or only fills zeros, so a negative limit survives to validate and
	// is reported instead of being silently replaced (as memstore does).
	out.Limits.MaxPayloadBytes = cmp.Or(out.Limits.MaxPayloadBytes, events.DefaultMaxPayloadBytes)
	out.Limits.MaxEventsPerAppend = cmp.Or(out.Limits.MaxEventsPerAppend, events.DefaultMaxEventsPerAppend)
	out.AppendRetry = out.AppendRetry.withDefaults()
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	out.ListenReconnectDelay = cmp.Or(out.ListenReconnectDelay, DefaultListenReconnectDelay)
	out.NotifyMinInterval = cmp.Or(out.NotifyMinInterval, DefaultNotifyMinInterval)
	return out
}

func (c Config) validate() error {
	if err := migrations.ValidateSchema(c.Schema); err != nil {
		return fmt.Errorf("pgstore: Config.Schema: %w", err)
	}
	if c.Limits.MaxPayloadBytes < 0 {
		return fmt.Errorf("pgstore: Config.Limits.MaxPayloadBytes is %d: use 0 for the default or a positive byte count", c.Limits.MaxPayloadBytes)
	}
	if c.Limits.MaxEventsPerAppend < 0 {
		return fmt.Errorf("pgstore: Config.Limits.MaxEventsPerAppend is %d: use 0 for the default or a positive count", c.Limits.MaxEventsPerAppend)
	}
	if err := c.AppendRetry.validate(); err != nil {
		return err
	}
	if c.ListenReconnectDelay < 0 {
		return errors.New("pgstore: Config.ListenReconnectDelay must not be negative")
	}
	return nil
}

// Store is the PostgreSQL event store. It is safe for concurrent use.
type Store struct {
	pool     *pgxpool.Pool
	cfg      Config
	q        queries
	instance string // tags this store's notifications

	wake    signal.Broadcast // new events may be readable
	healthy chanFlag         // listen connection is up

	notifier  *notifier
	listenLog *outageLog
	hooks     appendhook.Set
	watchers  signal.Watchers[checkpointMove] // checkpoint moves (feed.CheckpointWatcher)
	groups    signal.Watchers[string]         // membership announcements (feed.MembershipWatcher)
	// listenFault, when set (tests), runs before each part of the listen
	// connection's backlog step; an error it returns fails that part.
	listenFault atomic.Pointer[func(part string) error]
	// maxLostRaces is the const maxLostRaces, lowered by tests.
	maxLostRaces int
	// unqueuedInTx makes appends in a transaction take no stream lock
	// unless the stream is contended, as the previous release did: tests
	// use it to play a process of that release racing this one.
	unqueuedInTx bool
	hot          hotStreams  // streams Append queues on a lock for
	heads        streamHeads // the newest version Append committed, per stream
	horizon      horizonWatch

	cancel context.CancelFunc
	done   sync.WaitGroup
	closed chan struct{}
	once   sync.Once
}

// New returns a store over pool. Unless Config.DisableListen is set it
// starts a listener on one dedicated connection, so feed subscribers and
// checkpoint watchers in this process are woken by push. Call Close to stop
// it.
func New(ctx context.Context, pool *pgxpool.Pool, cfg *Config) (*Store, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if pool == nil {
		return nil, errors.New("pgstore: New needs a *pgxpool.Pool")
	}
	if !c.SkipSchemaCheck {
		if err := migrations.CheckServer(ctx, pool); err != nil {
			return nil, fmt.Errorf("pgstore: %w", err)
		}
		if err := checkSchema(ctx, pool, c.Schema); err != nil {
			return nil, err
		}
		if err := checkIsolation(ctx, pool); err != nil {
			return nil, err
		}
		if err := checkEncoding(ctx, pool); err != nil {
			return nil, err
		}
	}
	bg, cancel := context.WithCancel(context.Background())
	s := &Store{
		pool:         pool,
		cfg:          c,
		q:            newQueries(c.Schema),
		instance:     newInstanceID(),
		maxLostRaces: maxLostRaces,
		cancel:       cancel,
		closed:       make(chan struct{}),
	}
	s.notifier = newNotifier(pool, c.Logger, c.NotifyMinInterval, c.Schema)
	s.listenLog = newOutageLog(c.Logger, "listen connection", "feed subscribers poll until it is back")
	s.done.Add(1)
	go func() { defer s.done.Done(); s.notifier.run(bg) }()
	if !c.DisableListen {
		s.done.Add(1)
		go func() { defer s.done.Done(); s.listen(bg) }()
	}
	return s, nil
}

func checkSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	have, err := migrations.Current(ctx, pool, &migrations.Config{Schema: schema})
	if err != nil {
		return fmt.Errorf("pgstore: %w (is PostgreSQL reachable?)", err)
	}
	want, err := migrations.Latest()
	if err != nil {
		return err
	}
	switch {
	case have < want:
		return fmt.Errorf("pgstore: schema %q is at version %d, this build needs %d (run `converge migrate --schema %s`)", schema, have, want, schema)
	case have > want:
		// A later migration may have changed what this build writes to
		// (0005 dropped a table earlier builds append through).
		return fmt.Errorf("pgstore: schema %q is at version %d, ahead of this build's %d: run the newer converge that migrated it", schema, have, want)
	}
	return nil
}

// checkIsolation refuses a pool whose transactions default to a stricter
// level than READ COMMITTED (default_transaction_isolation set for the
// server, database, role or connection). Units begin READ COMMITTED
// whatever the default, but Append, checkpoint moves, leases and row
// writes outside a unit are statements of their own, run at the default:
// under REPEATABLE READ or SERIALIZABLE they fail with serialization
// errors (SQLSTATE 40001) where READ COMMITTED waits and carries on, and
// the store's ordering and retry rules assume it does.
func checkIsolation(ctx context.Context, pool *pgxpool.Pool) error {
	var level string
	if err := pool.QueryRow(ctx, "SHOW default_transaction_isolation").Scan(&level); err != nil {
		return fmt.Errorf("pgstore: read default_transaction_isolation: %w (is PostgreSQL reachable?)", err)
	}
	// PostgreSQL runs READ UNCOMMITTED as READ COMMITTED.
	if level != "read committed" && level != "read uncommitted" {
		return fmt.Errorf("pgstore: the pool's transactions default to %s isolation; converge needs read committed "+
			"(give it connections with default_transaction_isolation=read committed: in the URL as "+
			"?default_transaction_isolation=read%%20committed, or with ALTER ROLE ... SET default_transaction_isolation = 'read committed')", strings.ToUpper(level))
	}
	return nil
}

// checkEncoding refuses a pool whose connections convert text: a
// client_encoding other than UTF8 (set in the URL, by PGCLIENTENCODING,
// or for the role or database) on a server that converts. pgx sends and
// reads text as UTF-8 whatever the setting, and the server converts from
// and to the client's encoding: under LATIN1 an event's "é" would be
// stored as "Ã©", silently. SQL_ASCII on either side turns conversion off,
// so bytes pass as they are.
func checkEncoding(ctx context.Context, pool *pgxpool.Pool) error {
	var client, server string
	err := pool.QueryRow(ctx, "SELECT current_setting('client_encoding'), current_setting('server_encoding')").Scan(&client, &server)
	if err != nil {
		return fmt.Errorf("pgstore: read client_encoding: %w (is PostgreSQL reachable?)", err)
	}
	// A database in another encoding stores the text converted, where
	// PostgreSQL's md5() of a stream id, which partitions the feed in SQL,
	// would no longer agree with the same hash taken in Go over its UTF-8.
	if server != "UTF8" && server != "SQL_ASCII" {
		return fmt.Errorf("pgstore: the database's encoding is %s; converge stores UTF-8 text and hashes stream ids "+
			"in SQL and in Go alike, which needs a UTF8 (or SQL_ASCII) database: create one with "+
			"CREATE DATABASE ... ENCODING 'UTF8' TEMPLATE template0", server)
	}
	if client != "UTF8" && client != "SQL_ASCII" && server != "SQL_ASCII" {
		return fmt.Errorf("pgstore: the pool's connections use client_encoding %s; converge sends and reads UTF-8 text, "+
			"which the server would convert as %s and store altered: remove client_encoding from the URL "+
			"(and PGCLIENTENCODING from the environment), or set it to UTF8", client, client)
	}
	return nil
}

// Close stops the listener and the notifier and makes every later call
// fail with events.ErrClosed, so consumers reading from the store end (their
// subscriptions' channels close) and stop renewing their leases. It does
// not close the pool.
func (s *Store) Close() error {
	s.once.Do(func() {
		close(s.closed)
		s.cancel()
		s.done.Wait()
		s.wake.Notify()
	})
	return nil
}

// errClosed is what a call returns after Close.
var errClosed = fmt.Errorf("pgstore: %w: the store was closed (create a new one)", events.ErrClosed)

func (s *Store) isClosed() bool {
	select {
	case <-s.closed:
		return true
	default:
		return false
	}
}

// Pool returns the pool the store writes through.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Schema returns the schema the store's tables live in.
func (s *Store) Schema() string { return s.cfg.Schema }

// Registry returns the store's type registry.
func (s *Store) Registry() *events.Registry { return s.cfg.Registry }

// Limits returns the limits appends are held to, defaults filled in:
// callers that build events ahead of an append (a saga step) check them
// first.
func (s *Store) Limits() events.Limits { return s.cfg.Limits.WithDefaults() }

// Wake returns a channel closed when new events may be readable.
func (s *Store) Wake() <-chan struct{} { return s.wake.C() }

// PushHealthy reports whether the listen connection is up.
func (s *Store) PushHealthy() bool { return s.healthy.get() }

// PushHealthyChanged returns a channel closed the next time push health
// changes.
func (s *Store) PushHealthyChanged() <-chan struct{} { return s.healthy.changed() }

// WaitPushHealthy waits until PushHealthy reports want, or ctx ends: at
// start-up, to know wake-ups flow before relying on them; in tests, to
// await a lost or restored listen connection.
func (s *Store) WaitPushHealthy(ctx context.Context, want bool) error {
	for {
		ch := s.healthy.changed()
		if s.healthy.get() == want {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("pgstore: listen connection not healthy=%v: %w", want, ctx.Err())
		}
	}
}

// table returns the schema-qualified, quoted name of a converge table.
func table(schema, name string) string { return pgx.Identifier{schema, name}.Sanitize() }

// chanFlag is a boolean whose changes can be awaited.
type chanFlag struct {
	mu sync.Mutex
	v  bool
	b  signal.Broadcast
}

func (f *chanFlag) set(v bool) {
	f.mu.Lock()
	changed := f.v != v
	f.v = v
	f.mu.Unlock()
	if changed {
		f.b.Notify()
	}
}

func (f *chanFlag) get() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.v
}

func (f *chanFlag) changed() <-chan struct{} { return f.b.C() }

func newInstanceID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
