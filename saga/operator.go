package saga

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/rowjson"
)

// Operator reads saga instances and asks for operations on them straight
// from the rows, without the saga definitions: `converge sagas` runs on
// it, in a process that knows none of the application's types. Reading
// needs nothing else; a retry or cancel is recorded as a request that an
// engine running the saga type carries out (see RequestRetry), because
// only that engine can run the step again and keep its own metrics right.
type Operator struct {
	src   feed.Source
	rows  feed.Rows
	clock events.Clock
}

// OperatorConfig configures an Operator. Source is required.
type OperatorConfig struct {
	// Source holds the instances (a pgstore.Store or a memstore.Store).
	Source feed.Source
	// Clock dates requests and measures how long steps have been parked.
	// Defaults to events.SystemClock.
	Clock events.Clock
}

// NewOperator returns an Operator on cfg.Source.
func NewOperator(cfg *OperatorConfig) (*Operator, error) {
	if cfg == nil || cfg.Source == nil {
		return nil, errors.New("saga: NewOperator needs OperatorConfig.Source (the pgstore.Store or memstore.Store the engines run on)")
	}
	o := &Operator{src: cfg.Source, rows: cfg.Source.Rows(), clock: cfg.Clock}
	if o.clock == nil {
		o.clock = events.SystemClock{}
	}
	return o, nil
}

// List returns the instances that pass f in the order of their row keys:
// the saga's name, "/", then the id URL-path-escaped, compared byte by
// byte. The order is stable, so pages do not overlap, but it is not
// alphabetical by type and id where a name holds a byte below "/" (such
// as "-" or ".") or an id needs escaping.
func (o *Operator) List(ctx context.Context, f Filter) ([]Info, error) {
	return listInstances(ctx, o.rows, o.clock.Now(), f)
}

// Show returns an instance's timeline, as Engine.Show does.
func (o *Operator) Show(ctx context.Context, saga, id string) (Timeline, error) {
	return showInstance(ctx, o.rows, saga, id)
}

// Find returns the instances with this id, of every saga type: an id
// alone is usually enough for an operator to name an instance. It reads
// every instance row; prefer Show with the saga type when it is known.
func (o *Operator) Find(ctx context.Context, id string) ([]Info, error) {
	all, err := listAll(ctx, o.rows, tableInstance, "")
	if err != nil {
		return nil, err
	}
	suffix := "/" + url.PathEscape(id)
	var out []Info
	for _, row := range all {
		if !strings.HasSuffix(row.Key, suffix) {
			continue
		}
		in, err := decodeInstance(row)
		if err != nil {
			return nil, err
		}
		if in.ID == id {
			out = append(out, in.info())
		}
	}
	return out, nil
}

// IgnoredFor is the messages ignored for one id in one saga type, while
// that type had no instance with the id.
type IgnoredFor struct {
	Saga    string           `json:"saga"`
	ID      string           `json:"id"`
	Ignored []IgnoredMessage `json:"ignored"`
}

// FindIgnored returns the messages ignored for id in every saga type that
// has some (see Timeline.Ignored), in saga type order: when Find finds no
// instance, they say why the messages for the id did nothing. The records
// of a type with an instance of that id are its Show's. It reads the
// records of id, plus one row per saga type that has ignored messages.
func (o *Operator) FindIgnored(ctx context.Context, id string) ([]IgnoredFor, error) {
	if !instanceID(id) {
		// No message correlates to an id no instance can have: its
		// records' keys could not even be listed.
		return nil, nil
	}
	var out []IgnoredFor
	after := ""
	for {
		first, err := o.rows.List(ctx, rowNamespace, tableIgnored, feed.RowQuery{After: after, Limit: 1})
		if err != nil {
			return nil, fmt.Errorf("saga: list %s: %w", tableIgnored, err)
		}
		if len(first) == 0 {
			break
		}
		saga, _, ok := strings.Cut(first[0].Key, "/")
		if !ok {
			after = first[0].Key // not a record key; step over it
			continue
		}
		msgs, err := listIgnored(ctx, o.rows, saga, id)
		if err != nil {
			return nil, err
		}
		if len(msgs) > 0 {
			out = append(out, IgnoredFor{Saga: saga, ID: id, Ignored: msgs})
		}
		// Keys sort byte-wise and '0' follows '/', so this skips the rest
		// of the saga type's records, whatever their ids: a saga name
		// holds no '/'.
		after = saga + "0"
	}
	slices.SortFunc(out, func(a, b IgnoredFor) int { return strings.Compare(a.Saga, b.Saga) })
	return out, nil
}

// Request is an operator's retry or cancel of an instance, recorded until
// an engine running the saga type carries it out.
type Request struct {
	Op     string `json:"op"`
	Reason string `json:"reason,omitempty"`
	// SkipOnCancel is a cancel's CancelOptions.SkipOnCancel: the instance
	// ends without its OnCancel handler.
	SkipOnCancel bool      `json:"skip_on_cancel,omitempty"`
	At           time.Time `json:"at"`
}

// Request operations.
const (
	OpRetry  = "retry"
	OpCancel = "cancel"
)

// RequestRetry records a request to retry a failed or stuck instance (see
// Engine.Retry) and returns it. An engine running the saga type carries it
// out at its next parked-step pass (at the latest after
// EngineConfig.SweepInterval) and records the outcome in the instance's
// history; Pending reports it until then. ErrNotFound and ErrNotRetryable
// as Engine.Retry, checked now so the operator hears at once.
//
// Operators in several processes may ask at the same moment: a request is
// checked and recorded with the instance locked, so one of a retry and a
// cancel asked at once is refused with ErrRequestPending, never silently
// replaced by the other.
func (o *Operator) RequestRetry(ctx context.Context, saga, id string) (Request, error) {
	return o.record(ctx, saga, id, func(in *instance) (Request, error) {
		if !in.retryable() {
			return Request{}, notRetryable(in)
		}
		return Request{Op: OpRetry, At: o.clock.Now().UTC()}, nil
	})
}

// RequestCancel records a request to cancel an instance (see
// Engine.Cancel) and returns it, carried out like RequestRetry's. The reason is stored
// whatever it holds, as Engine.Cancel stores it: NUL kept as U+FFFD, cut
// at 4 KiB. ErrEnded for an instance that has already ended.
//
// An engine whose build cannot read the instance's state because a newer
// build stored it leaves the request for an engine of that build, which
// can run the OnCancel handler: after a rollback the request waits until
// the newer build is back. RequestCancelWith with
// CancelOptions.SkipOnCancel asks for the cancel without the handler,
// which any engine running the type carries out. RequestCancel is
// RequestCancelWith with only the reason.
func (o *Operator) RequestCancel(ctx context.Context, saga, id, reason string) (Request, error) {
	return o.RequestCancelWith(ctx, saga, id, CancelOptions{Reason: reason})
}

// RequestCancelWith records a request to cancel an instance as opts say
// (see Engine.CancelWith), as RequestCancel does. It replaces a cancel
// request that still waits, with its options: a request waiting for a
// newer build is replaced by one with CancelOptions.SkipOnCancel.
func (o *Operator) RequestCancelWith(ctx context.Context, saga, id string, opts CancelOptions) (Request, error) {
	return o.record(ctx, saga, id, func(in *instance) (Request, error) {
		if in.ended() {
			return Request{}, fmt.Errorf("%w: %s/%s is %s", ErrEnded, saga, id, in.Status)
		}
		// Cleaned as Engine.Cancel cleans it (NUL as U+FFFD, cut at 4 KiB):
		// the request row holds it until an engine carries it out, and a row
		// refuses NUL and more than 1 MiB.
		return Request{Op: OpCancel, Reason: requestText(opts.Reason), SkipOnCancel: opts.SkipOnCancel, At: o.clock.Now().UTC()}, nil
	})
}

// requestText is free text for a request row: storable, and left as it is
// by the storable of the engine that carries the request out. Invalid
// UTF-8 is replaced by U+FFFD now (the row's JSON would replace it byte by
// byte, growing the text past the cut). A text within the cut is kept
// whole, as Engine.Cancel keeps it; a longer one is cut short of it,
// leaving room for the note of its full size, so that it is not cut again,
// with a note of the cut's size instead.
func requestText(s string) string {
	valid := strings.ToValidUTF8(s, "\uFFFD")
	if t := rowjson.Text(valid, maxHistoryDetail); len(t) <= maxHistoryDetail {
		return t // within the cut: kept whole, as Engine.Cancel keeps it
	}
	return rowjson.Text(valid, maxHistoryDetail-clipNoteBytes)
}

// clipNoteBytes bounds the note rowjson.Clip adds to a text it cuts.
const clipNoteBytes = 64

// Pending returns the request waiting for an engine, if any.
func (o *Operator) Pending(ctx context.Context, saga, id string) (Request, bool, error) {
	r, ok, err := pendingRequest(ctx, o.rows, saga, id, feed.LockNone)
	if err != nil || !ok {
		return Request{}, false, err
	}
	return *r, true, nil
}

// record checks the instance with decide and records the request decide
// returns, in one unit that holds the instance locked: two operators
// asking at once take turns, and the second finds the first's request.
// The request row is locked before the instance row, in the order an
// engine taking a request locks them (runRequests), so an operator and an
// engine cannot deadlock.
func (o *Operator) record(ctx context.Context, saga, id string, decide func(*instance) (Request, error)) (Request, error) {
	if err := addressable(saga, id); err != nil {
		return Request{}, err
	}
	var r Request
	err := inUnit(ctx, o.src, DefaultConflictRetries, func(ctx context.Context, u feed.Unit) error {
		rows := u.Rows()
		if _, _, err := pendingRequest(ctx, rows, saga, id, feed.LockUpdate); err != nil {
			return err
		}
		row, ok, err := rows.Get(ctx, rowNamespace, tableInstance, instanceKey(saga, id), feed.LockUpdate)
		if err != nil {
			return wrapRows(err, "read instance", saga, id)
		}
		if !ok {
			return fmt.Errorf("%w: %s/%s", ErrNotFound, saga, id)
		}
		in, err := decodeInstance(row)
		if err != nil {
			return err
		}
		if r, err = decide(in); err != nil {
			return err
		}
		// Read again with the instance locked: on PostgreSQL a request
		// another operator recorded while this unit waited for the lock
		// (its row did not exist to be locked above) is seen now.
		cur, ok, err := pendingRequest(ctx, rows, saga, id, feed.LockUpdate)
		if err != nil {
			return err
		}
		if ok && cur.Op != r.Op {
			return fmt.Errorf("%w: %s/%s has a %s request from %s", ErrRequestPending, saga, id, cur.Op, cur.At.Format(time.RFC3339))
		}
		b, err := json.Marshal(r)
		if err != nil {
			return err
		}
		return wrapRows(rows.Put(ctx, rowNamespace, tableRequests, instanceKey(saga, id), b, in.Token), "record "+r.Op+" request", saga, id)
	})
	if err != nil {
		return Request{}, err
	}
	return r, nil
}

// retryable reports whether Engine.Retry has something to do.
func (in *instance) retryable() bool {
	return (in.Status == StatusFailed && in.Failed != nil) || (in.Parked != nil && in.Parked.Stuck)
}

func pendingRequest(ctx context.Context, rows feed.Rows, saga, id string, lock feed.Lock) (*Request, bool, error) {
	row, ok, err := rows.Get(ctx, rowNamespace, tableRequests, instanceKey(saga, id), lock)
	if err != nil || !ok {
		return nil, false, wrapRows(err, "read request", saga, id)
	}
	var r Request
	if err := json.Unmarshal(row.Value, &r); err != nil {
		return nil, false, fmt.Errorf("saga: request row %q does not decode: %w", row.Key, err)
	}
	return &r, true, nil
}

// runRequests carries out the operators' requests for the saga types this
// engine runs, each in a unit that also deletes the request; a request the
// instance refuses (it ended, or has nothing to retry) is dropped with the
// reason in the instance's history.
func (e *Engine) runRequests(ctx context.Context) (int, error) {
	page, err := listAll(ctx, e.cfg.Store.Rows(), tableRequests, "")
	if err != nil {
		return 0, err
	}
	done := 0
	// A request that fails does not hold up the others: the first failure
	// is returned once all have been tried.
	var first error
	for _, row := range page {
		var r Request
		if err := json.Unmarshal(row.Value, &r); err != nil {
			e.log.ErrorContext(ctx, "saga: request row does not decode; skipping", "key", row.Key, "error", err)
			continue
		}
		saga, id, ok := splitInstanceKey(row.Key)
		if !ok {
			e.log.ErrorContext(ctx, "saga: request row has a malformed key; skipping", "key", row.Key)
			continue
		}
		if _, ok := e.sagas[saga]; !ok {
			continue // another deployment runs it
		}
		err := e.withUnit(ctx, func(ctx context.Context, u feed.Unit) error {
			// Locked, so an engine in another process that listed the same
			// request waits for this unit, then finds it gone.
			cur, ok, err := pendingRequest(ctx, u.Rows(), saga, id, feed.LockUpdate)
			if err != nil || !ok || !sameRequest(*cur, r) {
				return err // taken by another process, or replaced
			}
			if err := u.Rows().Delete(ctx, rowNamespace, tableRequests, row.Key); err != nil {
				return wrapRows(err, "delete request", saga, id)
			}
			switch r.Op {
			case OpRetry:
				return e.retryIn(ctx, u, saga, id, "retried by an operator (requested "+r.At.Format(time.RFC3339)+")")
			case OpCancel:
				return e.cancelIn(ctx, u, saga, id, CancelOptions{Reason: r.Reason, SkipOnCancel: r.SkipOnCancel})
			}
			return fmt.Errorf("%w: unknown request %q", errRefused, r.Op)
		})
		if err == nil {
			done++
			continue
		}
		if errors.Is(err, errNewerBuild) {
			// Left for an engine of the newer build to take; after a
			// rollback none does until the operator asks again without
			// the OnCancel handler, which the error says how to.
			e.log.WarnContext(ctx, "saga: an operator's cancel request waits for an engine of a newer build", "saga", saga, "id", id, "error", err)
			continue
		}
		if !errors.Is(err, ErrNotRetryable) && !errors.Is(err, ErrEnded) && !errors.Is(err, ErrNotFound) && !errors.Is(err, errRefused) {
			if ctx.Err() != nil {
				return done, err
			}
			e.log.ErrorContext(ctx, "saga: an operator's request could not be carried out; the next pass tries again", "saga", saga, "id", id, "op", r.Op, "error", err)
			first = cmp.Or(first, err)
			continue
		}
		e.log.WarnContext(ctx, "saga: an operator's request was refused", "saga", saga, "id", id, "op", r.Op, "error", err)
		if err := e.withUnit(ctx, func(ctx context.Context, u feed.Unit) error { return e.refuse(ctx, u, saga, id, r, err) }); err != nil {
			if ctx.Err() != nil {
				return done, err
			}
			first = cmp.Or(first, err)
		}
	}
	if done > 0 {
		e.parkWake.Notify()
	}
	return done, first
}

var errRefused = errors.New("saga: request refused")

// refuse drops a request the instance cannot take, saying why in its
// history: r itself, not a request made since (nor one another engine
// took meanwhile).
func (e *Engine) refuse(ctx context.Context, u feed.Unit, saga, id string, r Request, why error) error {
	rows := u.Rows()
	cur, ok, err := pendingRequest(ctx, rows, saga, id, feed.LockUpdate)
	if err != nil || !ok || !sameRequest(*cur, r) {
		return err
	}
	if err := rows.Delete(ctx, rowNamespace, tableRequests, instanceKey(saga, id)); err != nil {
		return wrapRows(err, "delete request", saga, id)
	}
	in, found, err := e.load(ctx, rows, saga, id, feed.LockUpdate)
	if err != nil || !found {
		return err
	}
	if err := e.record(ctx, rows, in, HistoryEntry{Kind: KindRequestRefused, Detail: fmt.Sprintf("%s request refused: %v", r.Op, why)}); err != nil {
		return err
	}
	return e.save(ctx, rows, in)
}

func splitInstanceKey(key string) (saga, id string, ok bool) {
	saga, esc, ok := strings.Cut(key, "/")
	if !ok {
		return "", "", false
	}
	id, err := url.PathUnescape(esc)
	return saga, id, err == nil
}

func decodeInstance(row feed.Row) (*instance, error) {
	in := &instance{}
	if err := in.unmarshalRow(row.Value); err != nil {
		return nil, fmt.Errorf("saga: instance row %q does not decode: %w", row.Key, err)
	}
	return in, nil
}

func listInstances(ctx context.Context, rows feed.Rows, now time.Time, f Filter) ([]Info, error) {
	limit := f.Limit
	if limit <= 0 {
		limit = 1000
	}
	prefix := ""
	if f.Saga != "" {
		if err := ValidateName(f.Saga); err != nil {
			return nil, fmt.Errorf("saga: Filter.Saga names no saga type: %w", err)
		}
		prefix = f.Saga + "/"
	}
	if _, err := feed.ValidateRowQuery(feed.RowQuery{After: f.After}); err != nil {
		return nil, fmt.Errorf("saga: Filter.After %.40q is no cursor (pass the Cursor of the last Info listed): %w", f.After, err)
	}
	var out []Info
	after := f.After
	for {
		page, err := rows.List(ctx, rowNamespace, tableInstance, feed.RowQuery{Prefix: prefix, After: after, Limit: 500})
		if err != nil {
			return nil, fmt.Errorf("saga: list instances: %w", err)
		}
		for _, row := range page {
			after = row.Key
			in, err := decodeInstance(row)
			if err != nil {
				return nil, err
			}
			if f.Status != "" && in.Status != f.Status {
				continue
			}
			if f.StuckLongerThan > 0 && (in.Parked == nil || now.Sub(in.Parked.Since) <= f.StuckLongerThan) {
				continue
			}
			out = append(out, in.info())
			if len(out) == limit {
				return out, nil
			}
		}
		if len(page) < 500 {
			return out, nil
		}
	}
}

func showInstance(ctx context.Context, rows feed.Rows, saga, id string) (Timeline, error) {
	var tl Timeline
	if err := addressable(saga, id); err != nil {
		return tl, err
	}
	var err error
	if tl.Ignored, err = listIgnored(ctx, rows, saga, id); err != nil {
		return tl, err
	}
	row, found, err := rows.Get(ctx, rowNamespace, tableInstance, instanceKey(saga, id), feed.LockNone)
	if err != nil {
		return tl, wrapRows(err, "read instance", saga, id)
	}
	if !found {
		return tl, fmt.Errorf("%w: %s/%s", ErrNotFound, saga, id)
	}
	in, err := decodeInstance(row)
	if err != nil {
		return tl, err
	}
	tl.Info = in.info()
	if tl.Request, _, err = pendingRequest(ctx, rows, saga, id, feed.LockNone); err != nil {
		return tl, err
	}
	hist, err := listAll(ctx, rows, tableHistory, instanceKey(saga, id)+"/")
	if err != nil {
		return tl, err
	}
	for _, r := range hist {
		var hs []HistoryEntry
		if err := json.Unmarshal(r.Value, &hs); err != nil {
			return tl, fmt.Errorf("saga: history row %q does not decode: %w", r.Key, err)
		}
		tl.History = append(tl.History, hs...)
	}
	return tl, nil
}

// listIgnored returns the messages ignored for saga/id, in event id
// order; a record that does not decode is left out.
func listIgnored(ctx context.Context, rows feed.Rows, saga, id string) ([]IgnoredMessage, error) {
	recs, err := listAll(ctx, rows, tableIgnored, instanceKey(saga, id)+"/")
	if err != nil {
		return nil, err
	}
	var out []IgnoredMessage
	for _, r := range recs {
		var m IgnoredMessage
		if json.Unmarshal(r.Value, &m) == nil {
			out = append(out, m)
		}
	}
	return out, nil
}

func listAll(ctx context.Context, rows feed.Rows, table, prefix string) ([]feed.Row, error) {
	var out []feed.Row
	after := ""
	for {
		page, err := rows.List(ctx, rowNamespace, table, feed.RowQuery{Prefix: prefix, After: after, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("saga: list %s: %w", table, err)
		}
		out = append(out, page...)
		if len(page) < 1000 {
			return out, nil
		}
		after = page[len(page)-1].Key
	}
}

// sameRequest reports whether a and b are one request: made at the same
// time for the same operation.
func sameRequest(a, b Request) bool {
	return a.Op == b.Op && a.At.Equal(b.At) && a.Reason == b.Reason && a.SkipOnCancel == b.SkipOnCancel
}

// addressable returns ErrNotFound, saying why, for a saga type and id no
// instance can have (a name or id past its limit, or not valid text),
// instead of handing the store a row key it would refuse with an error
// about keys.
func addressable(saga, id string) error {
	why := ValidateName(saga)
	if why == nil {
		why = instanceIDWhy(id)
	}
	if why == nil {
		return nil
	}
	return fmt.Errorf("%w: %.100q/%.100q: %w", ErrNotFound, saga, id, why)
}

// instanceID reports whether an instance can have id.
func instanceID(id string) bool { return instanceIDWhy(id) == nil }

// instanceIDWhy says why no instance can have id, nil when one can.
func instanceIDWhy(id string) error {
	switch {
	case id == "":
		return errors.New("instance ids are never empty")
	case len(id) > MaxInstanceIDLength:
		return fmt.Errorf("instance ids are at most %d bytes, this one is %d", MaxInstanceIDLength, len(id))
	}
	if err := checkText(id); err != nil {
		return fmt.Errorf("instance id %w", err)
	}
	return nil
}
