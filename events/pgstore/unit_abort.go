package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/converge-es/converge/events/feed"
)

var _ feed.Aborter = (*unit)(nil)

// abortCancelTimeout bounds the cancel request of an Abort: the unit ends
// without it, and its caller (a consumer giving up on a handler) must not
// wait on an unreachable server for long.
const abortCancelTimeout = 5 * time.Second

// Abort ends the unit while its handler may still be running a statement
// on its connection (feed.Aborter). Nothing here may touch the
// connection's protocol state, which the handler's goroutine owns: a
// rollback would run beside the handler's statement (pgx answers "conn
// busy" and closes the connection under it) or, between two statements,
// put the connection back in the pool while the handler still holds the
// transaction. So the connection leaves the pool for good (Hijack touches
// only the pool), a cancel request on a connection of its own stops the
// statement running, and closing the socket makes the server roll the
// transaction back and end the session, releasing its locks. The
// handler's statement, and any it sends later, fails. Safe after Commit,
// Rollback, and twice.
func (u *unit) Abort(ctx context.Context) error {
	u.mu.Lock()
	conn := u.conn
	wasDone := u.done
	u.done = true
	u.held = nil
	u.mu.Unlock()
	if wasDone || conn == nil {
		return nil
	}
	pc := conn.Hijack().PgConn()
	cctx, cancel := context.WithTimeout(ctx, abortCancelTimeout)
	cerr := pc.CancelRequest(cctx)
	cancel()
	err := pc.Conn().Close()
	u.s.wake.Notify()
	if cerr != nil {
		return fmt.Errorf("pgstore: abort unit: its connection is closed, but cancelling its statement failed, so the server may run it on until it next writes to the client (set client_connection_check_interval to end it sooner): %w", cerr)
	}
	if err != nil {
		return fmt.Errorf("pgstore: abort unit: close its connection: %w", err)
	}
	return nil
}
