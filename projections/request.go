package projections

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// RequestsTable, in feed.RuntimeNamespace, holds at most one operator
// request per projection, keyed by its name: a rebuild or a reset asked
// for by a process that does not have the projection's handlers (`converge
// projections rebuild|reset`). A running Runner that has the projection
// carries it out (see RequestRebuild) and records the outcome in the row.
const RequestsTable = "projection_requests"

// RequestOp is what a Request asks for.
type RequestOp string

const (
	// OpRebuild asks for Runner.Rebuild.
	OpRebuild RequestOp = "rebuild"
	// OpReset asks for Runner.Reset to Request.To.
	OpReset RequestOp = "reset"
)

// RequestState is how far a Request got.
type RequestState string

const (
	// RequestPending: no runner has taken it yet (none is running the
	// projection, or none has looked since; see
	// RunnerConfig.StatusPollInterval).
	RequestPending RequestState = "pending"
	// RequestRunning: a runner took it: the rebuild is under way (Generation
	// is being built), or the reset is being made.
	RequestRunning RequestState = "running"
	// RequestDone: the rebuilt generation is active, or the checkpoints
	// were moved back.
	RequestDone RequestState = "done"
	// RequestFailed: it could not be carried out; Error says why.
	RequestFailed RequestState = "failed"
)

// Request is an operator's request for a rebuild or a reset, carried out
// by whichever running Runner has the projection.
type Request struct {
	// ID tells this request from earlier ones for the same projection.
	ID         string    `json:"id"`
	Projection string    `json:"projection"`
	Op         RequestOp `json:"op"`
	// To is where a reset moves the checkpoints (the zero token: the start
	// of the feed).
	To    events.Token `json:"to"`
	State RequestState `json:"state"`
	// Generation is the generation a rebuild builds, once taken.
	Generation int `json:"generation,omitempty"`
	// Error says why the request failed, or, while pending, why the last
	// runner that tried had to leave it (a reset is tried again when the
	// other processes running the projection did not give its leases back
	// in time, or after the store failed under it).
	Error string `json:"error,omitempty"`
	// Owner is the runner that took the request.
	Owner       string    `json:"owner,omitempty"`
	RequestedAt time.Time `json:"requested_at"`
	UpdatedAt   time.Time `json:"updated_at"`
}

// Finished reports whether the request is done or failed.
func (q Request) Finished() bool { return q.State == RequestDone || q.State == RequestFailed }

// ErrRequestPending is returned by RequestRebuild and RequestReset while
// an earlier request for the same projection is pending or running.
var ErrRequestPending = errors.New("projections: a request for this projection is already pending or running (see `converge projections status`)")

// RequestRebuild records a request to rebuild name (Runner.Rebuild). A
// running Runner that has the projection takes it within its
// StatusPollInterval: it starts the rebuild (Generation), and the request
// is done once the rebuilt generation is active. Only src's rows are
// needed, not the projection's definition. It fails with ErrNotRegistered
// for a projection no runner ever started, ErrRebuildInProgress while a
// rebuild runs, and ErrRequestPending while another request waits.
func RequestRebuild(ctx context.Context, src feed.Source, name string) (Request, error) {
	return request(ctx, src, name, OpRebuild, events.Token{})
}

// RequestReset records a request to reset name to tok (Runner.Reset),
// taken like RequestRebuild's by a running Runner that has the projection.
// Every running Runner that has it takes part: while the request is
// pending or running, each pauses its processor of the projection
// (feed.Processor.Pause), giving its partitions' leases back, so the one
// that takes the request can take every lease, also of a projection whose
// partitions several processes share; it waits a little for them (a few
// lease TTLs) and otherwise leaves the request pending to try again. Once
// the request is done or failed, they deliver again. A request taken by a
// runner that died is taken again once its claim is stale (two minutes),
// so the others are not left paused.
func RequestReset(ctx context.Context, src feed.Source, name string, tok events.Token) (Request, error) {
	return request(ctx, src, name, OpReset, tok)
}

func request(ctx context.Context, src feed.Source, name string, op RequestOp, tok events.Token) (Request, error) {
	now := time.Now().UTC()
	q := Request{
		ID: strconv.FormatInt(now.UnixNano(), 36), Projection: name, Op: op, To: tok,
		State: RequestPending, RequestedAt: now, UpdatedAt: now,
	}
	err := withUnit(ctx, src.Checkpoints(), func(ctx context.Context, u feed.Unit) error {
		// The state row, which exists, serialises two requests: a lock on
		// the request row would lock nothing on PostgreSQL while it does
		// not exist yet, and both would be recorded, one over the other.
		st, err := mustState(ctx, u.Rows(), name, feed.LockUpdate)
		if err != nil {
			return err
		}
		if op == OpRebuild && st.Building != 0 {
			return fmt.Errorf("%w: %q is building generation %d", ErrRebuildInProgress, name, st.Building)
		}
		old, ok, err := readRequest(ctx, u.Rows(), name, feed.LockUpdate)
		if err != nil {
			return err
		}
		if ok && !old.Finished() {
			return fmt.Errorf("%w: %s of %q, %s since %s", ErrRequestPending, old.Op, name, old.State, old.RequestedAt.Format(time.RFC3339))
		}
		return writeRequest(ctx, u.Rows(), q)
	})
	if err != nil {
		return Request{}, err
	}
	return q, nil
}

// ReadRequest returns the latest request for name, and false when there
// was none.
func ReadRequest(ctx context.Context, rows feed.Rows, name string) (Request, bool, error) {
	return readRequest(ctx, rows, name, feed.LockNone)
}

func readRequest(ctx context.Context, rows feed.Rows, name string, lock feed.Lock) (Request, bool, error) {
	row, ok, err := rows.Get(ctx, feed.RuntimeNamespace, RequestsTable, name, lock)
	if err != nil || !ok {
		return Request{}, false, err
	}
	var q Request
	if err := json.Unmarshal(row.Value, &q); err != nil {
		return Request{}, false, fmt.Errorf("projections: request for %q does not decode: %w", name, err)
	}
	return q, true, nil
}

func writeRequest(ctx context.Context, rows feed.Rows, q Request) error {
	b, err := json.Marshal(q)
	if err != nil {
		return fmt.Errorf("projections: encode request for %q: %w", q.Projection, err)
	}
	if err := rows.Put(ctx, feed.RuntimeNamespace, RequestsTable, q.Projection, b, events.Token{}); err != nil {
		return fmt.Errorf("projections: write request for %q: %w", q.Projection, err)
	}
	return nil
}
