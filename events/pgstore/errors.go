package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// classify wraps err with events.ErrUnavailable when it says the database
// is unreachable, restarting or overloaded, so callers can tell a fault that
// passes from a mistake, and with feed.ErrConflict when PostgreSQL aborted
// the transaction because another one stood in its way. Context errors are
// left as they are.
func classify(err error) error {
	switch {
	case isUnavailable(err):
		return fmt.Errorf("%w: %w", events.ErrUnavailable, err)
	case isConflict(err):
		return fmt.Errorf("%w: %w", feed.ErrConflict, err)
	}
	return err
}

// isConflict reports a deadlock (40P01) or a serialization failure
// (40001): the server rolled the transaction back, so nothing of it was
// written, and running the work again can succeed. The in-memory store
// reports the same situations as feed.ErrConflict, and callers that
// retry a unit (the saga engine, projections) look for that error only.
func isConflict(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40P01" || pgErr.Code == "40001")
}

// isUnavailable reports the failures that go away by themselves.
func isUnavailable(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch {
		case strings.HasPrefix(pgErr.Code, "08"): // connection exception
			return true
		case strings.HasPrefix(pgErr.Code, "53"): // insufficient resources: too many connections, out of memory, disk full
			return true
		case pgErr.Code == "57P01", pgErr.Code == "57P02", pgErr.Code == "57P03": // admin or crash shutdown, cannot connect now
			return true
		}
		return false
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connectErr) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.EPIPE) ||
		errors.As(err, &netErr)
}

// sentUnanswered reports a statement that reached the connection but whose
// reply did not come back: outside a transaction it may have committed. An
// error from the server (a PgError) is an answer: the statement failed.
// Only a lost connection or an interrupted wait loses a reply; any other
// error of the client (pgx refusing to encode a parameter, say) comes
// before anything is sent, and retrying it as unknown would only repeat
// it until the retries ran out.
func sentUnanswered(err error) bool {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) || pgconn.SafeToRetry(err) {
		return false
	}
	return isUnavailable(err) || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}
