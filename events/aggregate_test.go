package events_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

type Incremented struct {
	By int `json:"by"`
}

type Reset struct{}

// counter is the aggregate under test: the sum of its increments.
var counter = events.Aggregate[int]{
	Apply: func(n int, ev any) (int, error) {
		switch e := ev.(type) {
		case Incremented:
			return n + e.By, nil
		case Reset:
			return 0, nil
		}
		return n, fmt.Errorf("counter cannot apply %T", ev)
	},
}

// increment is a decide func that adds one.
func increment(int) ([]events.Event, error) {
	return []events.Event{{Data: Incremented{By: 1}}}, nil
}

// setupAggregate returns an empty store that knows the counter's events.
func setupAggregate(t *testing.T) *memstore.Store {
	t.Helper()
	reg := events.NewRegistry()
	events.Register[Incremented](reg, "aggregate_test.incremented")
	events.Register[Reset](reg, "aggregate_test.reset")
	s, err := memstore.New(&memstore.Config{Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	return s
}

func TestLoad(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := setupAggregate(t)

	n, version, err := events.Load(ctx, s, counter, "counter-1")
	require.NoError(t, err)
	require.Zero(t, n)
	require.Zero(t, version, "a stream without events is at version 0")

	// More events than one page, so Load pages through the stream.
	batch := make([]events.Event, 700)
	for i := range batch {
		batch[i] = events.Event{Data: Incremented{By: 1}}
	}
	_, err = s.Append(ctx, "counter-1", events.NoStream, batch...)
	require.NoError(t, err)
	_, err = s.Append(ctx, "counter-1", events.Exactly(700), events.Event{Data: Reset{}}, events.Event{Data: Incremented{By: 5}})
	require.NoError(t, err)
	_, err = s.Append(ctx, "counter-1", events.Exactly(702), batch[:300]...)
	require.NoError(t, err)

	n, version, err = events.Load(ctx, s, counter, "counter-1")
	require.NoError(t, err)
	require.Equal(t, 305, n)
	require.Equal(t, int64(1002), version)
}

func TestLoadInitial(t *testing.T) {
	t.Parallel()
	s := setupAggregate(t)
	agg := events.Aggregate[map[string]int]{
		Initial: func() map[string]int { return map[string]int{} },
		Apply: func(m map[string]int, ev any) (map[string]int, error) {
			m[fmt.Sprintf("%T", ev)]++
			return m, nil
		},
	}
	_, err := s.Append(t.Context(), "c-1", events.NoStream, events.Event{Data: Reset{}}, events.Event{Data: Reset{}})
	require.NoError(t, err)
	m, version, err := events.Load(t.Context(), s, agg, "c-1")
	require.NoError(t, err)
	require.Equal(t, map[string]int{"events_test.Reset": 2}, m)
	require.Equal(t, int64(2), version)
}

func TestLoadErrors(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := setupAggregate(t)

	_, _, err := events.Load(ctx, s, events.Aggregate[int]{}, "counter-1")
	require.ErrorContains(t, err, "Aggregate.Apply is nil")

	_, _, err = events.Load(ctx, s, counter, "")
	require.ErrorIs(t, err, events.ErrInvalidEvent)

	_, err = s.Append(ctx, "counter-1", events.NoStream,
		events.Event{Data: Incremented{By: 3}},
		events.Event{Data: events.Raw{Type: "aggregate_test.unknown", Payload: json.RawMessage(`{}`)}})
	require.NoError(t, err)
	n, version, err := events.Load(ctx, s, counter, "counter-1")
	require.ErrorIs(t, err, events.ErrUnknownType)
	require.ErrorContains(t, err, "event 2")
	require.Zero(t, n, "no partly replayed state on error")
	require.Zero(t, version)

	refuse := events.Aggregate[int]{Apply: func(int, any) (int, error) { return 0, errors.New("refused") }}
	_, _, err = events.Load(ctx, s, refuse, "counter-1")
	require.ErrorContains(t, err, "refused")
}

func TestUpdate(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := setupAggregate(t)

	res, err := events.Update(ctx, s, counter, "counter-1", nil, increment)
	require.NoError(t, err)
	require.Equal(t, int64(1), res.FirstVersion, "a new stream is created")
	res, err = events.Update(ctx, s, counter, "counter-1", nil, func(n int) ([]events.Event, error) {
		require.Equal(t, 1, n, "decide sees the loaded state")
		return []events.Event{{Data: Incremented{By: 2}}, {Data: Incremented{By: 3}}}, nil
	})
	require.NoError(t, err)
	require.Equal(t, int64(2), res.FirstVersion)
	require.Equal(t, int64(3), res.LastVersion)

	n, version, err := events.Load(ctx, s, counter, "counter-1")
	require.NoError(t, err)
	require.Equal(t, 6, n)
	require.Equal(t, int64(3), version)
}

func TestUpdateNothingToDo(t *testing.T) {
	t.Parallel()
	s := setupAggregate(t)
	res, err := events.Update(t.Context(), s, counter, "counter-1", nil, func(int) ([]events.Event, error) { return nil, nil })
	require.NoError(t, err)
	require.Equal(t, events.AppendResult{}, res)
	version, err := s.StreamVersion(t.Context(), "counter-1")
	require.NoError(t, err)
	require.Zero(t, version, "nothing was written")
}

func TestUpdateDecideError(t *testing.T) {
	t.Parallel()
	s := setupAggregate(t)
	errTooBig := errors.New("too big")
	_, err := events.Update(t.Context(), s, counter, "counter-1", &events.UpdateConfig{MaxAttempts: 5},
		func(int) ([]events.Event, error) { return nil, errTooBig })
	require.Same(t, errTooBig, err, "decide's error comes back unchanged")
}

// racingDecide returns a decide func that, on its first call only, lets
// another writer append to the stream, so the append that follows
// conflicts.
func racingDecide(t *testing.T, s events.Store, streamID string, calls *atomic.Int32) func(int) ([]events.Event, error) {
	t.Helper()
	return func(n int) ([]events.Event, error) {
		if calls.Add(1) == 1 {
			_, err := s.Append(t.Context(), streamID, events.AnyVersion, events.Event{Data: Incremented{By: 100}})
			require.NoError(t, err)
		}
		return []events.Event{{Data: Incremented{By: 1}}}, nil
	}
}

func TestUpdateConflict(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("no retry by default", func(t *testing.T) {
		t.Parallel()
		s := setupAggregate(t)
		var calls atomic.Int32
		_, err := events.Update(ctx, s, counter, "counter-1", nil, racingDecide(t, s, "counter-1", &calls))
		var wev *events.WrongExpectedVersionError
		require.ErrorAs(t, err, &wev)
		require.Equal(t, events.NoStream, wev.Expected)
		require.Equal(t, int64(1), wev.Actual)
		require.Equal(t, int32(1), calls.Load())
		n, _, err := events.Load(ctx, s, counter, "counter-1")
		require.NoError(t, err)
		require.Equal(t, 100, n, "only the racing writer's event is stored")
	})

	t.Run("retried when allowed", func(t *testing.T) {
		t.Parallel()
		s := setupAggregate(t)
		var calls atomic.Int32
		res, err := events.Update(ctx, s, counter, "counter-1", &events.UpdateConfig{MaxAttempts: 2}, racingDecide(t, s, "counter-1", &calls))
		require.NoError(t, err)
		require.Equal(t, int64(2), res.LastVersion)
		require.Equal(t, int32(2), calls.Load(), "decide ran again on the reloaded state")
		n, _, err := events.Load(ctx, s, counter, "counter-1")
		require.NoError(t, err)
		require.Equal(t, 101, n)
	})

	t.Run("gives up after MaxAttempts", func(t *testing.T) {
		t.Parallel()
		s := setupAggregate(t)
		var calls atomic.Int32
		alwaysRacing := func(int) ([]events.Event, error) {
			calls.Add(1)
			_, err := s.Append(t.Context(), "counter-1", events.AnyVersion, events.Event{Data: Incremented{By: 100}})
			require.NoError(t, err)
			return []events.Event{{Data: Incremented{By: 1}}}, nil
		}
		_, err := events.Update(ctx, s, counter, "counter-1", &events.UpdateConfig{MaxAttempts: 3}, alwaysRacing)
		require.ErrorIs(t, err, events.ErrWrongExpectedVersion)
		require.ErrorContains(t, err, "MaxAttempts")
		require.Equal(t, int32(3), calls.Load())
	})
}

func TestUpdateConcurrentCounter(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	s := setupAggregate(t)
	const callers = 20
	var (
		wg        sync.WaitGroup
		decisions atomic.Int32
		errs      = make([]error, callers)
		// Every caller's first decision waits until all callers have loaded
		// the empty stream, so all but one of the first appends conflict.
		allLoaded sync.WaitGroup
	)
	allLoaded.Add(callers)
	for i := range callers {
		wg.Go(func() {
			first := true
			// Each conflict means another caller succeeded, so callers
			// attempts always suffice.
			_, errs[i] = events.Update(ctx, s, counter, "counter-1", &events.UpdateConfig{MaxAttempts: callers},
				func(n int) ([]events.Event, error) {
					decisions.Add(1)
					if first {
						first = false
						allLoaded.Done()
						allLoaded.Wait()
					}
					return increment(n)
				})
		})
	}
	wg.Wait()
	require.NoError(t, errors.Join(errs...))

	n, version, err := events.Load(ctx, s, counter, "counter-1")
	require.NoError(t, err)
	require.Equal(t, callers, n, "every call counted exactly once")
	require.Equal(t, int64(callers), version)
	require.GreaterOrEqual(t, int(decisions.Load()), 2*callers-1, "the first round conflicted for all but one caller, and they retried")
}

func TestUpdateConfigValidation(t *testing.T) {
	t.Parallel()
	s := setupAggregate(t)
	_, err := events.Update(t.Context(), s, counter, "counter-1", &events.UpdateConfig{MaxAttempts: -1}, increment)
	require.ErrorContains(t, err, "UpdateConfig.MaxAttempts")
	_, err = events.Update[int](t.Context(), s, counter, "counter-1", nil, nil)
	require.ErrorContains(t, err, "decide is nil")
}

func ExampleUpdate() {
	ctx := context.Background()
	reg := events.NewRegistry()
	events.Register[Incremented](reg, "counter.incremented")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	if err != nil {
		panic(err)
	}
	defer store.Close()

	counter := events.Aggregate[int]{
		Apply: func(n int, ev any) (int, error) {
			if inc, ok := ev.(Incremented); ok {
				return n + inc.By, nil
			}
			return n, fmt.Errorf("unexpected %T", ev)
		},
	}
	// Increment unless the counter has reached 2. With concurrent writers,
	// allow retries: each starts again from the freshly loaded state.
	cfg := &events.UpdateConfig{MaxAttempts: 5}
	for range 3 {
		res, err := events.Update(ctx, store, counter, "counter-1", cfg, func(n int) ([]events.Event, error) {
			if n >= 2 {
				return nil, nil // nothing to do
			}
			return []events.Event{{Data: Incremented{By: 1}}}, nil
		})
		if err != nil {
			panic(err)
		}
		fmt.Println("appended up to version", res.LastVersion)
	}
	n, version, err := events.Load(ctx, store, counter, "counter-1")
	if err != nil {
		panic(err)
	}
	fmt.Println("counter", n, "at version", version)
	// Output:
	// appended up to version 1
	// appended up to version 2
	// appended up to version 0
	// counter 2 at version 2
}

// TestLoadErrorQuotesALongStreamIDCut: the error of a Load whose stream id
// the store refuses for its length quotes the id cut to the limit, with
// its size, never whole (a command handler stores such an error as a
// rejection's reason; a megabyte id would make it a megabyte long).
func TestLoadErrorQuotesALongStreamIDCut(t *testing.T) {
	t.Parallel()
	s := setupAggregate(t)
	seed := rand.Uint64()
	r := rand.New(rand.NewPCG(seed, seed))
	for range 20 {
		n := events.MaxStreamIDLength + 1 + r.IntN(1<<20)
		pieces := []string{"a", "é", "\x7f", "流", "'", "\""}
		var b strings.Builder
		for b.Len() < n {
			b.WriteString(pieces[r.IntN(len(pieces))])
		}
		id := b.String()
		_, _, err := events.Load(t.Context(), s, counter, id)
		require.ErrorIs(t, err, events.ErrInvalidEvent, "seed %d", seed)
		require.Less(t, len(err.Error()), 8*events.MaxStreamIDLength, "seed %d: an id of %d bytes", seed, len(id))
		require.Contains(t, err.Error(), fmt.Sprintf("(%d bytes)", len(id)), "seed %d: the error gives the id's size", seed)
	}
	// An id within the limit is quoted whole, as before.
	_, _, err := events.Load(t.Context(), s, counter, "counter\x00-1")
	require.ErrorContains(t, err, `"counter\x00-1"`)
}
