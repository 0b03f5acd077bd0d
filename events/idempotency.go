package events

import (
	"fmt"
	"maps"
	"reflect"
)

// AssignIDs returns a copy of evs in which every event without an id has a
// fresh one. Stores assign ids themselves, once per call; an application
// that retries an append across calls (after an ErrOutcomeUnknown, or from
// a message redelivered to it) fixes the ids first, so that the retry is
// recognised as the same append instead of storing the events twice.
func AssignIDs(evs []Event) []Event {
	out := make([]Event, len(evs))
	for i, ev := range evs {
		if ev.ID == "" {
			ev.ID = newUUID()
		}
		out[i] = ev
	}
	return out
}

// MatchStored decides what an append means when some of its event ids are
// already stored: stored holds the envelopes found under recs' ids, in any
// order. It returns found == false when none is stored (the append is new).
//
// An append is a retry of the append that stored its events when every id
// is stored, in streamID, at consecutive versions in the append's order,
// with the same type, schema version, payload (by EqualJSON) and metadata
// (AppliedMarksKey aside: an append hook sets it, callers cannot, and a
// retry may pass through a process whose hooks differ, or none), and
// expected describes where they landed (AnyVersion always does;
// Exactly(n) when the first is at n+1; NoStream when it is at 1;
// StreamExists when it is past 1). Then res is the original AppendResult,
// with AlreadyStored set.
// Anything else is an error wrapping ErrDuplicateEvent that says what
// differs. Stores call it under the same snapshot or lock that found the
// envelopes, so both stores judge retries alike.
func MatchStored(streamID string, expected ExpectedVersion, recs []Record, stored []Envelope) (res AppendResult, found bool, err error) {
	if len(stored) == 0 {
		return AppendResult{}, false, nil
	}
	byID := make(map[string]Envelope, len(stored))
	for _, env := range stored {
		byID[env.ID] = env
	}
	if len(byID) != len(recs) {
		return AppendResult{}, true, fmt.Errorf("%w: %d of the %d event ids of this append to %q are already stored, the others are not "+
			"(a retry must repeat the earlier append exactly; new events need new ids)", ErrDuplicateEvent, len(byID), len(recs), streamID)
	}
	first := byID[recs[0].ID].Version
	res = AppendResult{StreamID: streamID, EventIDs: make([]string, len(recs)), Tokens: make([]Token, len(recs)), AlreadyStored: true}
	for i, r := range recs {
		env, ok := byID[r.ID]
		switch {
		case !ok:
			return AppendResult{}, true, fmt.Errorf("%w: event %d (%s) of this append to %q is not stored, but others are "+
				"(a retry must repeat the earlier append exactly; new events need new ids)", ErrDuplicateEvent, i+1, r.ID, streamID)
		case env.StreamID != streamID:
			return AppendResult{}, true, fmt.Errorf("%w: event id %s is already stored in stream %q, not %q (an id names one event: give a new event a new id)",
				ErrDuplicateEvent, r.ID, env.StreamID, streamID)
		case env.Version != first+int64(i):
			return AppendResult{}, true, fmt.Errorf("%w: event id %s is already stored in %q at version %d, not in this append's order "+
				"(a retry must repeat the earlier append exactly)", ErrDuplicateEvent, r.ID, streamID, env.Version)
		case env.Type != r.Raw.Type || env.SchemaVersion != r.Raw.SchemaVersion || !EqualJSON(env.Payload, r.Raw.Payload) ||
			!reflect.DeepEqual(withoutMarks(env.Metadata), withoutMarks(r.Metadata)):
			return AppendResult{}, true, fmt.Errorf("%w: event id %s is already stored in %q at version %d with different content "+
				"(an id names one event: a retry must send the same event, a new event needs a new id)", ErrDuplicateEvent, r.ID, streamID, env.Version)
		}
		res.EventIDs[i] = r.ID
		res.Tokens[i] = env.Token
	}
	res.FirstVersion = first
	res.LastVersion = first + int64(len(recs)) - 1
	res.Token = res.Tokens[len(recs)-1]
	if !expected.Satisfied(first - 1) {
		return AppendResult{}, true, fmt.Errorf("%w: these events are already stored in %q at versions %d to %d, where expected version %s could not have put them "+
			"(retry with the expected version of the first attempt)", ErrDuplicateEvent, streamID, res.FirstVersion, res.LastVersion, expected)
	}
	return res, true, nil
}

// withoutMarks is m without the append hooks' marks (AppliedMarksKey), an
// Extra left empty as none: what a caller's retry can repeat.
func withoutMarks(m Metadata) Metadata {
	if len(m.Extra) == 0 {
		m.Extra = nil
		return m
	}
	if _, ok := m.Extra[AppliedMarksKey]; !ok {
		return m
	}
	extra := maps.Clone(m.Extra)
	delete(extra, AppliedMarksKey)
	if len(extra) == 0 {
		extra = nil
	}
	m.Extra = extra
	return m
}
