package pgstore

import (
	"context"
	"fmt"
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgxlisten"

	"github.com/converge-es/converge/events"
)

// Notification payloads: "h:<schema>:<instance>" when a store starts
// listening, "e:<schema>" when events were appended,
// "c:<schema>:<instance>:<major>:<minor>:<name>" when a checkpoint moved,
// "m:<schema>:<instance>:<group>" when a membership group changed.
// A store ignores its own checkpoint notifications: its watchers heard of
// the move at commit, and a late echo could undo a Reset made since. The schema
// comes first so stores of other schemas ignore what is not theirs; the
// name comes last because it may contain colons.

func (s *Store) eventsPayload() string { return "e:" + s.cfg.Schema }

func (s *Store) checkpointPayload(name string, pos events.Token) string {
	return "c:" + s.cfg.Schema + ":" + s.instance + ":" + strconv.FormatUint(pos.Major(), 10) + ":" + strconv.FormatUint(pos.Minor(), 10) + ":" + name
}

// listenAppName marks the listener's connection in pg_stat_activity, so an
// operator (or a test) can find it, and the notifiers of other processes
// learn that someone listens on the schema. PostgreSQL keeps 63 bytes of
// an application_name: a longer one would never equal what it stored, and
// the notifiers would think nobody listens. So a schema name too long to
// fit whole is cut, with a hash of the whole name to keep it apart from
// others cut alike.
func listenAppName(schema string) string {
	const prefix, max = "converge-listen-", 63
	if len(prefix)+len(schema) <= max {
		return prefix + schema
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(schema))
	sum := fmt.Sprintf("-%08x", h.Sum32())
	return prefix + schema[:max-len(prefix)-len(sum)] + sum
}

// listen runs the LISTEN loop until ctx ends. pgxlisten reconnects after
// failures (a failed backlog step closes the connection to be one); while
// the connection is down, or its backlog step has not succeeded,
// PushHealthy is false and feed subscribers fall back to polling.
func (s *Store) listen(ctx context.Context) {
	l := &pgxlisten.Listener{
		Connect: func(ctx context.Context) (*pgx.Conn, error) {
			cc := s.pool.Config().ConnConfig.Copy()
			cc.RuntimeParams["application_name"] = listenAppName(s.cfg.Schema)
			return pgx.ConnectConfig(ctx, cc)
		},
		LogError: func(ctx context.Context, err error) {
			// The server may have restarted or failed over: before anyone
			// sees push unhealthy, stop trusting remembered heads.
			s.heads.forgetAll()
			s.healthy.set(false)
			if ctx.Err() == nil {
				s.listenLog.failed(err)
			}
		},
		ReconnectDelay: s.cfg.ListenReconnectDelay,
	}
	l.Handle(NotifyChannel, &listenHandler{s: s})
	_ = l.Listen(ctx) // returns only when ctx ends
	s.healthy.set(false)
}

// listenHandler is called by one listener goroutine, one call at a time.
type listenHandler struct {
	s *Store
	// listened is set once the first connection listens: only a later one
	// follows an outage whose checkpoint moves were lost.
	listened bool
}

// HandleBacklog runs once the connection listens again: anything appended
// while it was down is picked up by waking every reader.
//
// Checkpoint moves announced while it was down are lost, not delayed, and
// a lost one may be a rewind (a Reset elsewhere): a tracker that missed it
// would go on answering from the old position, and label reads of the
// rewound model fresh. So every checkpoint's position is announced to the
// watchers again before push reports healthy; one behind what a tracker
// knows makes it read the store and believe the rewind.
//
// It also says hello, so stores that skip NOTIFYs while nobody else listens
// (see notifier) start notifying this one at once.
//
// Push reports healthy only once all of that succeeded. When any part
// fails, the connection is closed: pgxlisten then reconnects, after
// Config.ListenReconnectDelay (never zero, so a step that keeps failing
// is retried at that pace, not in a loop), and the whole step runs again.
// Left open, the connection would go on receiving notifications while push
// stayed reported down until some unrelated reconnect, and subscribers
// polled slower meanwhile.
func (h *listenHandler) HandleBacklog(ctx context.Context, _ string, conn *pgx.Conn) error {
	if err := h.catchUp(ctx, conn); err != nil {
		_ = conn.Close(ctx)
		return err
	}
	h.s.healthy.set(true)
	h.s.listenLog.recovered()
	h.s.wake.Notify()
	return nil
}

// catchUp is HandleBacklog's fallible part: the re-announce after an
// outage, then the hello.
func (h *listenHandler) catchUp(ctx context.Context, conn *pgx.Conn) error {
	h.s.notifier.ownListener.Store(conn.PgConn().PID())
	// Any connection after the first one that listened follows a gap,
	// even one whose step failed before it announced anything.
	again := h.listened
	h.listened = true
	if again {
		if err := h.announceCheckpoints(ctx, conn); err != nil {
			return err
		}
	}
	if err := h.s.backlogFault("hello"); err != nil {
		return fmt.Errorf("pgstore: say hello after listening: %w", err)
	}
	if _, err := conn.Exec(ctx, `SELECT pg_notify($1, $2)`, NotifyChannel, "h:"+h.s.cfg.Schema+":"+h.s.instance); err != nil {
		return fmt.Errorf("pgstore: say hello after listening: %w", err)
	}
	return nil
}

// backlogFault returns the failure a test injected into part of the
// backlog step ("announce", "hello"), if any.
func (s *Store) backlogFault(part string) error {
	if f := s.listenFault.Load(); f != nil {
		return (*f)(part)
	}
	return nil
}

func (h *listenHandler) HandleNotification(_ context.Context, n *pgconn.Notification, _ *pgx.Conn) error {
	h.s.handlePayload(n.Payload)
	return nil
}

func (s *Store) handlePayload(p string) {
	kind, rest, ok := strings.Cut(p, ":")
	if !ok {
		return
	}
	switch kind {
	case "h":
		if schema, instance, ok := strings.Cut(rest, ":"); ok && schema == s.cfg.Schema && instance != s.instance {
			s.notifier.newcomer(s.eventsPayload())
		}
	case "e":
		if rest == s.cfg.Schema {
			s.wake.Notify()
		}
	case "m":
		s.heardGroup(rest)
	case "c":
		parts := strings.SplitN(rest, ":", 5)
		if len(parts) != 5 || parts[0] != s.cfg.Schema {
			return
		}
		// The other process's unit may have held the read horizon back.
		s.wake.Notify()
		if parts[1] == s.instance {
			return
		}
		major, err1 := strconv.ParseUint(parts[2], 10, 64)
		minor, err2 := strconv.ParseUint(parts[3], 10, 64)
		if err1 != nil || err2 != nil {
			return
		}
		s.fireCheckpoint(parts[4], events.MakeToken(major, minor))
	}
}

// announceCheckpoints tells the watchers every checkpoint's stored
// position, read on the listen connection itself.
func (h *listenHandler) announceCheckpoints(ctx context.Context, conn *pgx.Conn) error {
	if err := h.s.backlogFault("announce"); err != nil {
		return fmt.Errorf("pgstore: read checkpoints to announce after listening again: %w", err)
	}
	rows, err := conn.Query(ctx, h.s.q.allPositions)
	if err != nil {
		return fmt.Errorf("pgstore: read checkpoints to announce after listening again: %w", err)
	}
	moves, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (checkpointMove, error) {
		var m checkpointMove
		var major, minor int64
		err := r.Scan(&m.name, &major, &minor)
		m.pos = events.MakeToken(uint64(major), uint64(minor))
		return m, err
	})
	if err != nil {
		return fmt.Errorf("pgstore: read checkpoints to announce after listening again: %w", err)
	}
	for _, m := range moves {
		h.s.fireCheckpoint(m.name, m.pos)
	}
	return nil
}
