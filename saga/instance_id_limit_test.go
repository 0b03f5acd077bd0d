package saga_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/sagatest"
)

// idPieces are what random instance ids are made of: ASCII, the
// characters SQL, LIKE patterns, URL escaping and row keys treat
// specially, and UTF-8 of two, three and four bytes.
var idPieces = []string{
	"a", "Z", "7", "-", ".", "'", `"`, ";", "--", "%", "_", `\`, "/", "*", "(", ")", " ", "?", "#", "&", "+",
	"é", "ß", "€", "日", "本", "😀", "🚀",
}

// randomID returns an id of exactly n bytes of valid UTF-8 drawn from
// idPieces.
func randomID(rng *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		p := idPieces[rng.IntN(len(idPieces))]
		if b.Len()+len(p) > n {
			p = "x"
		}
		b.WriteString(p)
	}
	return b.String()
}

// TestInstanceIDLengthLimit: an instance id of MaxInstanceIDLength bytes
// starts an instance like any other, its commands included (their stream
// ids would be too long as "cmd.<type>-<id>"; see command.StreamFor), and
// one a byte longer is refused with ErrCorrelation, naming the limit and
// counted as bad input, before any instance is touched. The ids are random,
// of multi-byte UTF-8 and SQL metacharacters, so the limit is in bytes,
// not characters, and no character breaks a row key or a query.
func TestInstanceIDLengthLimit(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 71))
		fx := newFixture(t, mk, setup{})
		n := 20
		if mk != nil {
			n = 5
		}
		for i := range n {
			id := randomID(rng, saga.MaxInstanceIDLength)
			require.True(t, utf8.ValidString(id))
			stream := fmt.Sprint("order-limit-", i)
			fx.When(sagatest.Event{Stream: stream, Data: OrderPlaced{OrderID: id, Total: 1}})
			fx.ExpectCommands(ReserveStock{OrderID: id})
			fx.ExpectStatus(orders, id, saga.StatusRunning)

			long := randomID(rng, saga.MaxInstanceIDLength+1)
			err := fx.TryWhen(sagatest.Event{Stream: stream + "-long", Data: OrderPlaced{OrderID: long, Total: 1}})
			require.ErrorIs(t, err, saga.ErrCorrelation, "id %q", long)
			require.ErrorContains(t, err, fmt.Sprintf("is %d bytes, the limit is %d", saga.MaxInstanceIDLength+1, saga.MaxInstanceIDLength))
		}
		list, err := fx.Engine().List(context.Background(), saga.Filter{})
		require.NoError(t, err)
		require.Len(t, list, n, "only the ids at the limit started instances")
		require.Equal(t, float64(n), testutil.ToFloat64(fx.Engine().Metrics().BadInput.WithLabelValues("correlation")), "each id over the limit is bad input")
	})
}

// TestInstanceIDsFollowTheTextRule: an id within the length limit that
// holds a character stream ids refuse (a C0 or C1 control, DEL, U+2028 or
// U+2029, anywhere) is refused with ErrCorrelation and counted as bad
// input, like one over the limit; ids without one start instances. (An id
// with a NUL never reaches the saga: no payload may hold one, and the
// append refuses the event.)
func TestInstanceIDsFollowTheTextRule(t *testing.T) {
	t.Parallel()
	seed := randomSeed(t)
	forEachStore(t, func(t *testing.T, mk storeMaker) { //nolint:thelper // a subtest body, not a helper
		rng := rand.New(rand.NewPCG(seed, 73))
		s := saga.New[orderState]("text_rule", nil)
		saga.StartOn(s, byOrder[OrderPlaced], func(*saga.Step[orderState], OrderPlaced) error { return nil })
		// No read model: the test's own model keys rows by order id,
		// which the row rules would refuse first.
		fx := newFixture(t, mk, setup{config: func(c *sagatest.Config) { c.Sagas, c.Models = []saga.Definition{s}, nil }})
		bad := 0
		for i := range 12 {
			rs := []rune(randomID(rng, 1+rng.IntN(saga.MaxInstanceIDLength-4)))
			if rng.IntN(2) == 0 {
				id := string(rs)
				fx.When(sagatest.Event{Stream: fmt.Sprint("order-text-", i), Data: OrderPlaced{OrderID: id, Total: 1}})
				fx.ExpectStatus("text_rule", id, saga.StatusRunning)
				continue
			}
			k := rng.IntN(len(rs) + 1)
			id := string(rs[:k]) + randomControl(rng) + string(rs[k:])
			stream := fmt.Sprint("order-text-", i)
			if strings.ContainsRune(id, 0) {
				// No payload may hold a NUL (PostgreSQL cannot store
				// one): the append refuses the event, which never
				// reaches the saga.
				_, err := fx.Store().Append(context.Background(), stream, events.AnyVersion, events.Event{Data: OrderPlaced{OrderID: id, Total: 1}})
				require.ErrorIs(t, err, events.ErrInvalidEvent, "id %q", id)
				continue
			}
			err := fx.TryWhen(sagatest.Event{Stream: stream, Data: OrderPlaced{OrderID: id, Total: 1}})
			require.ErrorIs(t, err, saga.ErrCorrelation, "id %q", id)
			require.ErrorContains(t, err, "control character")
			bad++
		}
		require.Equal(t, float64(bad), testutil.ToFloat64(fx.Engine().Metrics().BadInput.WithLabelValues("correlation")))
	})
}
