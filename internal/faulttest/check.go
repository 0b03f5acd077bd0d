package faulttest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
)

// horizonWait bounds how long CheckAppends waits for the read horizon to
// pass the newest confirmed append.
const horizonWait = time.Minute

// maxProblems caps how many problems an error lists.
const maxProblems = 10

// AppendReport is what CheckAppends found.
type AppendReport struct {
	// Confirmed, Unknown: the writer's appends; Stored: events in the
	// store; UnknownStored: unknown appends that turned out stored.
	Confirmed, Unknown, Stored, UnknownStored int
	// Lost: confirmed events missing from the store. Doubled: events
	// stored more than once (by id, or by the caller's key).
	Lost, Doubled int
}

func (r AppendReport) String() string {
	return fmt.Sprintf("%d confirmed appends, %d unknown (%d of them stored), %d events stored, %d lost, %d doubled",
		r.Confirmed, r.Unknown, r.UnknownStored, r.Stored, r.Lost, r.Doubled)
}

// CheckAppends reads every event in store and checks the writer's result
// against it: every confirmed event is stored exactly once, every unknown
// one at most once, nothing else is stored, and no two stored events share
// a key (key returns a logical identity, e.g. a sequence number in the
// payload, so a retry with fresh ids would show; nil keys by event id). It
// returns the counts and an error listing the first problems.
func CheckAppends(ctx context.Context, store events.Store, res WriterResult, key func(events.Envelope) string) (AppendReport, error) {
	rep := AppendReport{Confirmed: len(res.Confirmed), Unknown: len(res.Unknown)}
	if key == nil {
		key = func(e events.Envelope) string { return e.ID }
	}
	byID := map[string]int{}
	byKey := map[string]int{}
	// The feed ends where an open transaction holds the read horizon, and
	// processes still running (saga workers) open them all the time: an
	// empty page before the newest confirmed append is a wait, not the end.
	var newest events.Token
	for _, a := range res.Confirmed {
		newest = newest.Max(a.Token)
	}
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	wait, cancel := context.WithTimeout(ctx, horizonWait)
	defer cancel()
	var after events.Token
	stalled := false
	held := func() error {
		return fmt.Errorf("faulttest: the feed stayed behind the newest confirmed append (%s) at %s: a transaction holds the read horizon: %w",
			newest, after, wait.Err())
	}
	for {
		page, err := store.ReadAll(wait, after, 1000)
		if err != nil {
			if stalled && wait.Err() != nil {
				return rep, held()
			}
			return rep, fmt.Errorf("faulttest: read the store: %w", err)
		}
		if len(page) == 0 && after.Before(newest) {
			stalled = true
			select {
			case <-poll.C:
				continue
			case <-wait.Done():
				return rep, held()
			}
		}
		if len(page) == 0 {
			break
		}
		for _, e := range page {
			byID[e.ID]++
			byKey[key(e)]++
		}
		rep.Stored += len(page)
		after = page[len(page)-1].Token
	}

	var problems []string
	expected := map[string]bool{}
	for _, a := range res.Confirmed {
		for _, id := range a.EventIDs {
			expected[id] = true
			switch n := byID[id]; {
			case n == 0:
				rep.Lost++
				problems = append(problems, fmt.Sprintf("append %d: event %s was confirmed but is not stored", a.Index, id))
			case n > 1:
				rep.Doubled++
				problems = append(problems, fmt.Sprintf("append %d: event %s is stored %d times", a.Index, id, n))
			}
		}
	}
	for _, a := range res.Unknown {
		stored := false
		for _, id := range a.EventIDs {
			expected[id] = true
			stored = stored || byID[id] > 0
		}
		if stored {
			rep.UnknownStored++
		}
	}
	for _, id := range slices.Sorted(maps.Keys(byID)) {
		if !expected[id] {
			problems = append(problems, fmt.Sprintf("event %s is stored but the writer never appended it", id))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(byKey)) {
		if n := byKey[k]; n > 1 {
			rep.Doubled += n - 1
			problems = append(problems, fmt.Sprintf("key %q is stored %d times (a retry with a fresh id?)", k, n))
		}
	}
	for _, a := range res.Refused {
		problems = append(problems, fmt.Sprintf("append %d was refused: %v", a.Index, a.Err))
	}
	return rep, problemsErr("appends", problems)
}

// AwaitCheckpoints waits until every named checkpoint of src is at the
// store's head, polling every 50ms, and fails when ctx ends first or a
// checkpoint is past the head (which would mean it skipped nothing but
// counts events that do not exist).
func AwaitCheckpoints(ctx context.Context, store events.Store, src feed.Source, names ...string) (events.Token, error) {
	head, err := store.Head(ctx)
	if err != nil {
		return events.Token{}, fmt.Errorf("faulttest: head: %w", err)
	}
	poll := time.NewTicker(50 * time.Millisecond)
	defer poll.Stop()
	for _, name := range names {
		for {
			pos, err := src.Checkpoints().Position(ctx, name)
			switch {
			case err == nil && pos == head:
			case err == nil && head.Before(pos):
				return head, fmt.Errorf("faulttest: checkpoint %q is at %s, past the head %s", name, pos, head)
			default:
				select {
				case <-poll.C:
					continue
				case <-ctx.Done():
					return head, fmt.Errorf("faulttest: checkpoint %q did not reach the head %s (it is at %s): %w", name, head, pos, errors.Join(ctx.Err(), err))
				}
			}
			break
		}
	}
	return head, nil
}

// Diff compares a read model with its recomputation from the events and
// returns an error naming the first differences, or nil when they match.
func Diff[K cmp.Ordered, V comparable](what string, want, got map[K]V) error {
	var problems []string
	for _, k := range slices.Sorted(maps.Keys(want)) {
		g, ok := got[k]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("%v: missing, want %+v", k, want[k]))
		case g != want[k]:
			problems = append(problems, fmt.Sprintf("%v: got %+v, want %+v", k, g, want[k]))
		}
	}
	for _, k := range slices.Sorted(maps.Keys(got)) {
		if _, ok := want[k]; !ok {
			problems = append(problems, fmt.Sprintf("%v: unexpected %+v", k, got[k]))
		}
	}
	return problemsErr(what, problems)
}

func problemsErr(what string, problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	n, more := len(problems), ""
	if n > maxProblems {
		more = fmt.Sprintf("\n  … and %d more", n-maxProblems)
		problems = problems[:maxProblems]
	}
	return errors.New("faulttest: " + what + ": " + fmt.Sprint(n) + " problem(s):\n  " + strings.Join(problems, "\n  ") + more)
}
