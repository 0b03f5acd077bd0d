package saga

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/ascii"
	"github.com/converge-es/converge/internal/rowjson"
)

// Status is where an instance stands. Stored as these strings, so they
// never change meaning.
type Status string

const (
	// StatusRunning: the instance takes its messages as they come.
	StatusRunning Status = "running"
	// StatusParked: a step waits (for read models to catch up, or for a
	// retry); the instance's later messages queue behind it.
	StatusParked Status = "parked"
	// StatusCompensating: a step ran the registered compensations.
	StatusCompensating Status = "compensating"
	// StatusCompleted: a step called Complete. Ended.
	StatusCompleted Status = "completed"
	// StatusFailed: a step called Fail (ended), or failed with an error
	// past its attempts (Engine.Retry runs it again).
	StatusFailed Status = "failed"
	// StatusCancelled: an operator cancelled the instance. Ended.
	StatusCancelled Status = "cancelled"
)

// instance is the stored instance row.
type instance struct {
	Saga string `json:"saga"`
	ID   string `json:"id"`
	// Origin is the id of the message that started the instance: command
	// ids derive from it, so two units racing to start one instance never
	// send commands with the same ids.
	Origin       string     `json:"origin"`
	Status       Status     `json:"status"`
	Reason       string     `json:"reason,omitempty"`
	State        storedJSON `json:"state_text"`
	StateVersion int        `json:"state_version"`
	// Version counts writes; the row is written under a LockUpdate read,
	// so two steps never both build on the same Version.
	Version int64 `json:"version"`
	// Token is the causal token: the highest token the instance has seen
	// or produced.
	Token events.Token `json:"token"`
	// Seq counts steps run: command ids derive from it.
	Seq        int64 `json:"seq"`
	HistorySeq int64 `json:"history_seq"`
	// MailboxHead is the next queued message to take, MailboxTail the
	// next free slot: the mailbox holds [MailboxHead, MailboxTail).
	MailboxHead int64 `json:"mailbox_head"`
	MailboxTail int64 `json:"mailbox_tail"`
	// TimerGen numbers every schedule and cancel of this instance, so a
	// generation is never reused.
	TimerGen      int64                 `json:"timer_gen"`
	Timers        map[string]timerState `json:"timers,omitempty"`
	Compensations []commandRecord       `json:"compensations,omitempty"`
	Compensated   bool                  `json:"compensated,omitempty"`
	// Parked is the step waiting to run; nil when none.
	Parked *parked `json:"parked,omitempty"`
	// Failed is the message whose step failed past its attempts: Retry
	// runs it again. Nil for an instance failed by its own decision.
	Failed  *events.Envelope `json:"failed,omitempty"`
	Created time.Time        `json:"created"`
	Updated time.Time        `json:"updated"`
	// Ended is when the instance ended; zero while it runs (and for one
	// that ended before the engine recorded it).
	Ended time.Time `json:"ended,omitzero"`
	// EndIndexed is the time in the key of the instance's ended-index row,
	// zero when it has none: the row is written once the instance has
	// ended and again when a purged one takes a late message, so whatever
	// that message wrote is purged in turn.
	EndIndexed time.Time `json:"end_indexed,omitzero"`
	// Purged is when retention last deleted the instance's per-message
	// rows (EngineConfig.Retention); zero when it never did.
	Purged time.Time `json:"purged,omitzero"`
	// pending are history entries recorded but not yet written (save
	// writes them).
	pending []HistoryEntry
	// indexed says whether the instance's parked-index row exists.
	indexed bool
	// endedAtLoad says whether the instance had ended when it was loaded,
	// so save tells the step that ends it from later writes.
	endedAtLoad bool
	// purging stops save from indexing the tombstone the purge writes.
	purging bool
}

// driverOwned reports whether the parked-step driver must look at the
// instance: a parked step, or queued messages it has to drain.
func (in *instance) driverOwned() bool {
	return !in.ended() && (in.Parked != nil || (in.MailboxHead < in.MailboxTail && in.Status != StatusFailed))
}

// parked is a step waiting for read models (Models at Token) or for its
// retry time (RetryAt).
type parked struct {
	Env    events.Envelope `json:"env"`
	Models []string        `json:"models,omitempty"`
	Token  events.Token    `json:"token"`
	Since  time.Time       `json:"since"`
	// Waiting is when the step first parked for its models. Since is the
	// stuck clock, which a Retry of a stuck step restarts; Waiting is not,
	// so converge_saga_park_seconds observes the whole wait.
	Waiting   time.Time `json:"waiting,omitzero"`
	RetryAt   time.Time `json:"retry_at,omitzero"`
	Attempts  int       `json:"attempts,omitempty"`
	LastError string    `json:"last_error,omitempty"`
	// NewerWaits counts the times a build older than the stored state
	// handed the step back (awaitNewerBuild): its backoff, kept apart from
	// Attempts because the step did not run.
	NewerWaits int  `json:"newer_waits,omitempty"`
	Stuck      bool `json:"stuck,omitempty"`
	// Resume is the status to return to once the step has run.
	Resume Status `json:"resume"`
}

// timerState is one named timer of an instance.
type timerState struct {
	Gen    int64     `json:"gen"`
	Due    time.Time `json:"due"`
	Active bool      `json:"active"`
}

// commandRecord is a command kept for later (a compensation).
type commandRecord struct {
	Type          string     `json:"type"`
	SchemaVersion int        `json:"schema_version"`
	Payload       storedJSON `json:"payload_text"`
}

// UnmarshalJSON reads a compensation of either row format (see
// storedJSON).
func (c *commandRecord) UnmarshalJSON(b []byte) error {
	type plain commandRecord
	aux := struct {
		*plain
		Legacy json.RawMessage `json:"payload"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if len(c.Payload) == 0 {
		return c.Payload.fromLegacy(aux.Legacy)
	}
	return nil
}

// UnmarshalJSON reads an instance row of either format (see storedJSON).
// Rows are read with unmarshalRow: json.Unmarshal of an instance would
// scan the row twice more before this runs.
func (in *instance) UnmarshalJSON(b []byte) error { return in.unmarshalRow(b) }

func (in *instance) unmarshalRow(b []byte) error {
	type plain instance
	aux := struct {
		*plain
		Legacy json.RawMessage `json:"state"`
	}{plain: (*plain)(in)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if len(in.State) == 0 {
		return in.State.fromLegacy(aux.Legacy)
	}
	return nil
}

// storedJSON is a JSON document (an instance's state, a compensation's
// payload) kept in the instance row as a JSON string holding its text, so
// that every store gives back the bytes it was given. Kept as JSON, it
// would come back from PostgreSQL's jsonb in jsonb's form: keys
// reordered, a space after every ',' and ':', numbers written out (1e-300
// as 304 characters). That form can be far larger than what the step
// that stored it measured (a compensation accepted when registered would
// then refuse every later step of its instance, or the step that sends
// it), and differs from memory's bytes, which commands, Info.State and
// the upcasters would see.
//
// The text goes under keys of its own (state_text, payload_text), so a
// row of either format reads exactly: rows written before documents were
// kept as text hold the JSON itself under state and payload, and are read
// compacted (a value that was itself a JSON string, "42" say, stays that
// string).
type storedJSON []byte

// MarshalJSON encodes the document as a JSON string of its text, as
// rowjson does (no HTML escaping); no document is null.
func (j storedJSON) MarshalJSON() ([]byte, error) {
	if len(j) == 0 {
		return []byte("null"), nil
	}
	return rowjson.Marshal(string(j))
}

// UnmarshalJSON decodes the JSON string holding a document's text (null:
// no document).
func (j *storedJSON) UnmarshalJSON(b []byte) error {
	var text *string
	if err := json.Unmarshal(b, &text); err != nil {
		return fmt.Errorf("saga: a stored document is not a JSON string of its text: %w", err)
	}
	if text == nil {
		*j = nil
		return nil
	}
	*j = storedJSON(*text)
	return nil
}

// document is the JSON document as Info shows it: JSON null when there is
// none (an instance whose first step has not run yet), as rows have
// always given it.
func (j storedJSON) document() json.RawMessage {
	if len(j) == 0 {
		return json.RawMessage("null")
	}
	return json.RawMessage(j)
}

// fromLegacy takes a document of a row written before documents were
// kept as text, compacted (none, or null, is no document).
func (j *storedJSON) fromLegacy(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return err
	}
	*j = buf.Bytes()
	return nil
}

// size is what the document takes in the instance row: the length of
// MarshalJSON's string, counted without encoding it.
func (j storedJSON) size() int {
	if len(j) == 0 {
		return len("null")
	}
	n := len(`""`)
	for i := 0; i < len(j); {
		if c := j[i]; c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' || c == '\t':
				n += 2
			case c < 0x20:
				n += len(`\u0000`)
			default:
				n++
			}
			i++
			continue
		}
		r, w := utf8.DecodeRune(j[i:])
		if (r == utf8.RuneError && w == 1) || r == '\u2028' || r == '\u2029' {
			n += len(`\ufffd`) // what encoding/json writes for each
		} else {
			n += w
		}
		i += w
	}
	return n
}

// ended reports whether the instance takes no more messages.
func (in *instance) ended() bool {
	switch in.Status {
	case StatusCompleted, StatusCancelled:
		return true
	case StatusFailed:
		return in.Failed == nil
	}
	return false
}

// hasState reports whether a step has stored the instance's state: until
// then the row holds JSON null (or no state at all).
func (in *instance) hasState() bool {
	raw := bytes.TrimSpace(in.State)
	return len(raw) > 0 && !bytes.Equal(raw, []byte("null"))
}

// blocked reports whether new messages must queue: a step is parked, the
// mailbox is not drained, or a failed step waits for an operator.
func (in *instance) blocked() bool {
	return in.Parked != nil || in.MailboxHead < in.MailboxTail || (in.Status == StatusFailed && in.Failed != nil)
}

// Row layout in feed.Rows, namespace rowNamespace. Instance ids are
// path-escaped in keys, so an id containing '/' cannot alias another's
// prefix.
const (
	rowNamespace  = "converge.saga"
	tableInstance = "instances"
	tableHandled  = "handled"
	tableHistory  = "history"
	tableMailbox  = "mailbox"
	tableTimers   = "timers"
	tableParked   = "parked"
	tableIgnored  = "ignored"
	tableClaims   = "claims"
	tableRequests = "requests"
	tableEnded    = "ended"
	// tableIgnoredIndex lists the ignored-message records by time, as
	// tableEnded lists ended instances, so retention finds the records of
	// messages for ids that never had an instance.
	tableIgnoredIndex = "ignored_index"
)

func instanceKey(saga, id string) string { return saga + "/" + url.PathEscape(id) }

func childKey(saga, id, rest string) string { return instanceKey(saga, id) + "/" + rest }

func seqKey(n int64) string { return fmt.Sprintf("%020d", n) }

func timerKey(due time.Time, saga, id, name string) string {
	return fmt.Sprintf("%020d/%s/%s", timerNanos(due), instanceKey(saga, id), url.PathEscape(name))
}

// timerNanos is due in nanoseconds since 1970 for a timer key, clamped to
// what an int64 holds and to 0: UnixNano is undefined past the year 2262
// (it wraps negative, and "-..." sorts first, so a timer scheduled as good
// as never fired at once) and a negative key would sort out of order.
// Clamping keeps the order; a due time before 1970 has long come anyway.
func timerNanos(due time.Time) int64 {
	switch {
	case due.Before(time.Unix(0, 0)):
		return 0
	case due.After(time.Unix(0, math.MaxInt64)):
		return math.MaxInt64
	}
	return due.UnixNano()
}

// endedKey sorts the ended index by time, so the sweep reads only the
// entries old enough to purge.
func endedKey(at time.Time, saga, id string) string {
	return timeKey(at, instanceKey(saga, id))
}

func parseEndedKey(key string) (at time.Time, saga, id string, err error) {
	at, rest, err := parseTimeKey(key)
	if err != nil {
		return at, "", "", err
	}
	saga, id, ok := splitInstanceKey(rest)
	if !ok {
		return at, "", "", errors.New("malformed instance key in ended-index key")
	}
	return at, saga, id, nil
}

// ignoredIndexKey sorts the ignored-message index by time like the ended
// index; after the time comes the key of the ignored-message record.
func ignoredIndexKey(at time.Time, recordKey string) string { return timeKey(at, recordKey) }

// parseIgnoredIndexKey returns the time, the record's key and the
// instance id the message was correlated to.
func parseIgnoredIndexKey(key string) (at time.Time, recordKey, saga, id string, err error) {
	at, recordKey, err = parseTimeKey(key)
	if err != nil {
		return at, "", "", "", err
	}
	// The escaped id holds no '/': the event id follows the next one.
	saga, rest, ok := strings.Cut(recordKey, "/")
	esc, _, ok2 := strings.Cut(rest, "/")
	if !ok || !ok2 {
		return at, "", "", "", errors.New("malformed record key in ignored-index key")
	}
	if id, err = url.PathUnescape(esc); err != nil {
		return at, "", "", "", err
	}
	return at, recordKey, saga, id, nil
}

func timeKey(at time.Time, rest string) string {
	return fmt.Sprintf("%020d/%s", timerNanos(at), rest)
}

func parseTimeKey(key string) (time.Time, string, error) {
	head, rest, ok := strings.Cut(key, "/")
	if !ok {
		return time.Time{}, "", errors.New("no '/' in index key")
	}
	n, err := strconv.ParseInt(head, 10, 64)
	if err != nil {
		return time.Time{}, "", err
	}
	return time.Unix(0, n).UTC(), rest, nil
}

// checkText is the rule for instance ids and timer names, the one stream
// ids and type names follow: valid UTF-8 without control characters
// (Unicode's Cc, the C1 controls such as U+0085 included) or the line and
// paragraph separators U+2028 and U+2029, which would break a timeline or
// a terminal line apart.
func checkText(s string) error {
	if ascii.Printable(s) {
		return nil
	}
	if !utf8.ValidString(s) {
		return errors.New("not valid UTF-8")
	}
	for _, r := range s {
		if events.IsControl(r) {
			return fmt.Errorf("contains control character %U", r)
		}
	}
	return nil
}
