package live

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path"
	"time"

	"github.com/converge-es/converge/events"
)

const (
	// DefaultSendBuffer is how many published updates may wait for one
	// client before the client counts as too slow and is dropped.
	DefaultSendBuffer = 64
	// DefaultWriteTimeout bounds every write to one client, and how long
	// Close waits for clients to take their close frames.
	DefaultWriteTimeout = 5 * time.Second
	// DefaultMaxClients caps concurrent connections to one Hub.
	DefaultMaxClients = 10_000
	// DefaultMaxSubscriptionsPerClient caps the entities one connection
	// follows at a time.
	DefaultMaxSubscriptionsPerClient = 100
	// DefaultPingInterval is how often an idle connection is pinged, so
	// that peers which vanished without closing TCP are noticed.
	DefaultPingInterval = 30 * time.Second
	// DefaultSnapshotTimeout bounds one Config.Snapshot call.
	DefaultSnapshotTimeout = 2 * time.Second

	// MaxEntityIDLen is the longest entity id, in bytes, a client may
	// subscribe to.
	MaxEntityIDLen = 200
	// MaxClientMessageSize is the largest message, in bytes, a client may
	// send. A larger one closes the connection with
	// websocket.StatusMessageTooBig.
	MaxClientMessageSize = 4 << 10
)

// SnapshotFunc reads the current state of one entity's read-model row, so
// that a client that just subscribed does not miss state committed before
// it subscribed. found is false when there is no row yet.
//
// pos must be at or after the position of the last event the returned data
// reflects: the row's own position, or the projection's checkpoint read in
// the same transaction as the row. The Hub uses it to drop updates the
// snapshot already contains (see the package doc, "Snapshots").
type SnapshotFunc func(ctx context.Context, entityID string) (data json.RawMessage, pos events.Token, found bool, err error)

// Config configures a Hub. The zero value is usable.
type Config struct {
	// SendBuffer is how many published updates may wait to be sent to one
	// client. Publish never waits for a client: when a client has
	// SendBuffer updates waiting, the next one drops it (closed with
	// websocket.StatusPolicyViolation, "too slow") and counts it in
	// Stats.Dropped. Updates buffered while snapshots are read, for all of
	// a client's subscriptions together, are held to the same limit.
	//
	// Replies to the client's own requests (acknowledgements, snapshots,
	// errors) do not count: up to SendBuffer of them, plus one per entity
	// named in the URL, may wait besides, and a client with that many
	// waiting has its next request handled only once one is sent (see
	// MaxSubscriptionsPerClient for the requests read meanwhile). Defaults
	// to DefaultSendBuffer (64).
	SendBuffer int

	// WriteTimeout bounds each write to a client; a client that does not
	// take a message within it is disconnected. It also bounds how long
	// Close waits for clients to acknowledge their close frames, and how
	// long a ping waits for its pong. Defaults to DefaultWriteTimeout (5s).
	WriteTimeout time.Duration

	// MaxClients caps concurrent connections. Beyond it the Handler answers
	// 503 Service Unavailable with Retry-After, before the upgrade.
	// Defaults to DefaultMaxClients (10000).
	MaxClients int

	// MaxSubscriptionsPerClient caps how many entities one connection
	// follows. A subscribe beyond it gets an error message; a URL that names
	// more is refused with 400 Bad Request. It is also how many requests of
	// one connection are read ahead of the one being handled (a snapshot
	// being read, or a reply waiting for room), so that a client
	// resubscribing to all its entities at once is read in full and its
	// pings are answered meanwhile; a client further ahead is read on only
	// as its requests are handled. Defaults to
	// DefaultMaxSubscriptionsPerClient (100).
	MaxSubscriptionsPerClient int

	// PingInterval is how often each connection is pinged. A connection
	// whose pong does not come back within WriteTimeout is closed, so dead
	// peers (a laptop closed mid-session) are removed even when nothing is
	// published to them. (A ping during which the Hub held back the
	// client's requests, and so did not read the connection, does not
	// count: the next one decides.) Defaults to DefaultPingInterval (30s).
	PingInterval time.Duration

	// AllowedOrigins lists the origins, besides the Hub's own host, whose
	// pages may open a connection. It is passed as is to
	// websocket.AcceptOptions.OriginPatterns: host patterns matched with
	// path.Match ("app.example.com", "*.example.com"), or "scheme://host"
	// patterns. Defaults to nil: same-origin only, so a page on another
	// site cannot subscribe with a visitor's cookies. (Requests without an
	// Origin header, from non-browser clients, are always accepted.)
	AllowedOrigins []string

	// Snapshot, when set, is called after each subscribe, and its result is
	// sent right after the "subscribed" acknowledgement, as an "updated"
	// message with "snapshot": true. When it fails (an error, a panic,
	// SnapshotTimeout, or data that is not valid JSON in UTF-8), the
	// failure is logged and the client gets an "error" message for the
	// entity instead, then the later updates. Defaults to nil: clients get
	// only the updates published after they subscribed.
	Snapshot SnapshotFunc

	// SnapshotTimeout bounds each Snapshot call. One that has not
	// returned by then fails as above, whether or not it heeds its
	// context: it is left to finish on its own and its result is dropped,
	// so it holds up neither the client nor Close. Defaults to
	// DefaultSnapshotTimeout (2s).
	SnapshotTimeout time.Duration

	// Logger receives connection failures, dropped clients and rejected
	// publishes. Defaults to slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	c.SendBuffer = cmp.Or(c.SendBuffer, DefaultSendBuffer)
	c.WriteTimeout = cmp.Or(c.WriteTimeout, DefaultWriteTimeout)
	c.MaxClients = cmp.Or(c.MaxClients, DefaultMaxClients)
	c.MaxSubscriptionsPerClient = cmp.Or(c.MaxSubscriptionsPerClient, DefaultMaxSubscriptionsPerClient)
	c.PingInterval = cmp.Or(c.PingInterval, DefaultPingInterval)
	c.SnapshotTimeout = cmp.Or(c.SnapshotTimeout, DefaultSnapshotTimeout)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	switch {
	case c.SendBuffer < 0:
		return fmt.Errorf("live: Config.SendBuffer is %d, want > 0 (leave it 0 for the default)", c.SendBuffer)
	case c.WriteTimeout < 0:
		return fmt.Errorf("live: Config.WriteTimeout is %s, want > 0 (leave it 0 for the default)", c.WriteTimeout)
	case c.MaxClients < 0:
		return fmt.Errorf("live: Config.MaxClients is %d, want > 0 (leave it 0 for the default)", c.MaxClients)
	case c.MaxSubscriptionsPerClient < 0:
		return fmt.Errorf("live: Config.MaxSubscriptionsPerClient is %d, want > 0 (leave it 0 for the default)", c.MaxSubscriptionsPerClient)
	case c.PingInterval < 0:
		return fmt.Errorf("live: Config.PingInterval is %s, want > 0 (leave it 0 for the default)", c.PingInterval)
	case c.SnapshotTimeout < 0:
		return fmt.Errorf("live: Config.SnapshotTimeout is %s, want > 0 (leave it 0 for the default)", c.SnapshotTimeout)
	}
	for i, p := range c.AllowedOrigins {
		if p == "" {
			return fmt.Errorf("live: Config.AllowedOrigins[%d] is empty (remove it)", i)
		}
		if _, err := path.Match(p, ""); err != nil {
			return fmt.Errorf("live: Config.AllowedOrigins[%d] %q is not a valid path.Match pattern: %w", i, p, err)
		}
	}
	return nil
}
