package saga_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// textPieces are what random free text is made of: NUL (which
// PostgreSQL's jsonb cannot hold), other control characters, separators
// JSON escapes, and UTF-8 of two to four bytes.
var textPieces = []string{"a", " ", "\x00", "\x01", "\n", "\t", `"`, `\`, "\u2028", "é", "€", "😀"}

func randomText(rng *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		b.WriteString(textPieces[rng.IntN(len(textPieces))])
	}
	return b.String()
}

// requireStoredText checks what an instance row kept of text: all of it up
// to 4 KiB, NUL shown as U+FFFD; past that, its beginning and its size.
func requireStoredText(t *testing.T, text, stored string) {
	t.Helper()
	require.NotContains(t, stored, "\x00")
	want := strings.ReplaceAll(text, "\x00", "\uFFFD")
	if len(want) <= 4<<10 {
		require.Equal(t, want, stored)
		return
	}
	require.True(t, strings.HasPrefix(stored, want[:3<<10]), "the text's beginning is kept")
	require.True(t, strings.HasSuffix(stored, fmt.Sprintf("(%d bytes in all)", len(want))), "stored %q…", stored[max(0, len(stored)-40):])
	require.LessOrEqual(t, len(stored), 4<<10+64)
}

// TestFreeTextIsStoredWhateverItHolds: a step's Fail reason and Note, an
// error a step returns (permanent, or retried) and an operator's cancel
// reason are kept in the instance's rows whatever they hold (NUL, control
// characters, megabytes): the step commits as it would with plain text,
// never failing the unit, which the runtime would retry and then halt,
// holding up every other instance of the partition.
func TestFreeTextIsStoredWhateverItHolds(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 151))
		texts := map[string]string{}
		s := saga.New[orderState]("texts", &saga.Config[orderState]{MaxAttempts: 5, RetryBackoff: time.Hour})
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			text := texts[e.OrderID]
			switch e.Total {
			case 0:
				st.Fail(text)
			case 1:
				st.Note(text)
			case 2:
				return saga.Permanent(errors.New(text))
			case 3:
				return errors.New(text) // retried later
			}
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		for i := range 12 {
			id := fmt.Sprint("t", i)
			kind := i % 5
			size := rng.IntN(64)
			if rng.IntN(3) == 0 {
				size = rng.IntN(2 << 20) // up to twice the row limit
			}
			text := randomText(rng, size)
			texts[id] = text
			fx.When(placed(id, kind))
			info := fx.Instance("texts", id)
			tl := fx.History("texts", id)
			last := tl.History[len(tl.History)-1]
			switch kind {
			case 0:
				require.Equal(t, saga.StatusFailed, info.Status)
				requireStoredText(t, cmpOr(text, "failed by the saga"), info.Reason)
			case 1:
				require.Equal(t, saga.StatusRunning, info.Status)
				notes := 0
				for _, h := range tl.History {
					if h.Kind == saga.KindNote {
						requireStoredText(t, text, h.Detail)
						notes++
					}
				}
				require.Equal(t, 1, notes)
			case 2:
				require.Equal(t, saga.StatusFailed, info.Status)
				require.NotContains(t, info.Reason, "\x00")
				require.Contains(t, info.Reason, strings.ReplaceAll(text[:min(len(text), 1<<10)], "\x00", "\uFFFD"), "the error's text is the reason")
			case 3:
				require.Equal(t, saga.StatusParked, info.Status, "%s: %s", last.Kind, info.Reason)
				require.False(t, info.RetryAt.IsZero(), "the step waits for its retry")
				require.NotContains(t, last.Detail, "\x00")
			case 4:
				require.Equal(t, saga.StatusRunning, info.Status)
				require.NoError(t, fx.Engine().Cancel(t.Context(), "texts", id, text))
				// An empty reason (a size of 0 is drawn now and then) is
				// stored as the default.
				requireStoredText(t, cmpOr(text, "cancelled by an operator"), fx.Instance("texts", id).Reason)
			}
		}
	})
}

func cmpOr(s, otherwise string) string {
	if s == "" {
		return otherwise
	}
	return s
}

// TestTimersLeaveNoTraceOnceCancelled: an instance that schedules and
// cancels timers under ever new names keeps only its pending timers in
// its row. A step doing so 12,000 times (names of 90 bytes) would
// otherwise leave over a megabyte of cancelled timers behind, more than a
// row holds.
func TestTimersLeaveNoTraceOnceCancelled(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[orderState]("churn", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			for i := range e.Total {
				name := fmt.Sprintf("%090d", i)
				st.Schedule(name, time.Hour)
				st.Cancel(name)
			}
			st.Schedule("kept", time.Hour)
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		fx.When(placed("1", 12000))
		fx.ExpectStatus("churn", "1", saga.StatusRunning)
		fx.ExpectTimer("churn", "1", "kept", time.Hour)
		require.Len(t, fx.Instance("churn", "1").Timers, 1)

		// The step's history, over a megabyte, is all there, in order.
		count := map[string]int{}
		tl := fx.History("churn", "1")
		for i, h := range tl.History {
			require.Equal(t, int64(i+1), h.Seq, "entries in order, none missing")
			count[h.Kind]++
		}
		require.Equal(t, 12001, count[saga.KindTimerScheduled])
		require.Equal(t, 12000, count[saga.KindTimerCancelled])
		require.Equal(t, fmt.Sprintf("%090d", 11999), tl.History[len(tl.History)-2].Detail, "details are kept")
	})
}

// TestTooManyPendingTimersFailTheInstance: pending timers count against
// what an instance holds, as its state and compensations do. A step
// scheduling more than fit fails its instance, saying so, with nothing of
// the step kept; it never fails the unit.
func TestTooManyPendingTimersFailTheInstance(t *testing.T) {
	t.Parallel()
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		s := saga.New[orderState]("many", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(st *saga.Step[orderState], e OrderPlaced) error {
			for i := range e.Total {
				st.Schedule(fmt.Sprintf("%090d", i), time.Hour)
			}
			return nil
		})
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas = []saga.Definition{s} }})
		fx.When(placed("1", 12000))
		fx.ExpectStatus("many", "1", saga.StatusFailed)
		require.Contains(t, fx.Instance("many", "1").Reason, "pending timers")
		require.Empty(t, fx.Instance("many", "1").Timers)

		fx.When(placed("2", 100))
		fx.ExpectStatus("many", "2", saga.StatusRunning)
		require.Len(t, fx.Instance("many", "2").Timers, 100)
	})
}
