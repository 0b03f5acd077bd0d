package orders_test

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/examples/orders"
)

func demoConfig(out *bytes.Buffer) *orders.DemoConfig {
	return &orders.DemoConfig{Orders: 40, Customers: 6, Seed: 3, Lag: 20 * time.Millisecond, PaymentTimeout: 6 * time.Second, Out: out}
}

// checkSummary asserts the demo's invariants: every order ended in exactly
// one outcome, every read model equals its rebuild, and the gate did its
// job (every order's credit check was gated).
func checkSummary(t *testing.T, s orders.DemoSummary, out string) {
	t.Helper()
	require.True(t, s.OK(), out)
	total := 0
	for _, n := range s.Outcomes() {
		total += n
	}
	require.Equal(t, s.Orders, total, "each order has one outcome")
	// Each order's credit check passes the gate once; one whose gate could
	// not read the store (a busy machine) runs later without it, by the
	// engine's driver, uncounted.
	require.LessOrEqual(t, s.Gated, int64(s.Orders), "each order's credit check is gated at most once")
	require.Positive(t, s.Gated)
	require.LessOrEqual(t, s.StaleAvoided, s.Gated)
	require.Positive(t, s.StaleAvoided, "the injected lag leaves the read model behind some steps")
	require.Positive(t, s.Completed)
	require.Positive(t, s.Compensated())
	require.Contains(t, out, "every saga reached a terminal state")
	require.Contains(t, out, "every read model equals a clean rebuild")
}

func TestDemoIsRepeatablePerSeed(t *testing.T) {
	t.Parallel()
	var outcomes []map[string]int
	for range 2 {
		var buf bytes.Buffer
		s, err := orders.RunDemo(context.Background(), stores["memory"](t), demoConfig(&buf))
		require.NoError(t, err, buf.String())
		checkSummary(t, s, buf.String())
		outcomes = append(outcomes, s.Outcomes())
	}
	require.Equal(t, outcomes[0], outcomes[1], "the same seed gives the same outcomes")
}

// TestDemoOnPostgreSQL: the demo runs on PostgreSQL too, and a seed's
// outcomes are the same on either store.
func TestDemoOnPostgreSQL(t *testing.T) {
	t.Parallel()
	outcomes := map[string]map[string]int{}
	for _, name := range []string{"postgres", "memory"} {
		var buf bytes.Buffer
		s, err := orders.RunDemo(context.Background(), stores[name](t), demoConfig(&buf))
		require.NoError(t, err, buf.String())
		checkSummary(t, s, buf.String())
		outcomes[name] = s.Outcomes()
	}
	require.Equal(t, outcomes["memory"], outcomes["postgres"], "the same seed gives the same outcomes on either store")
}

// TestDemoReportsSagasThatDoNotEnd: when orders do not settle (here every
// card goes unanswered, a negative rate being none, and the payment
// timeout is an hour away), each
// customer goes on after SettleTimeout, the summary is printed all the
// same, naming the sagas that did not end, and RunDemo fails with
// ErrDemoFailed.
func TestDemoReportsSagasThatDoNotEnd(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	s, err := orders.RunDemo(context.Background(), stores["memory"](t), &orders.DemoConfig{
		Orders: 6, Customers: 2, Seed: 5, Lag: -1, NoAnswerRate: 1, DeclineRate: -1, SoldOutRate: -1,
		PaymentTimeout: time.Hour, SettleTimeout: 50 * time.Millisecond, Out: &buf,
	})
	require.ErrorIs(t, err, orders.ErrDemoFailed, buf.String())
	require.False(t, s.OK())
	require.Len(t, s.NotEnded, 6, "every unanswered payment is still waiting")
	require.Contains(t, buf.String(), "NOT ENDED", "the summary is printed")
}

// TestDemoReportsConsumersBehind: when the read models lag so much that
// customers give up and the consumers have not caught up with the feed
// when the run stops waiting for them (QuiesceTimeout), the summary is
// printed all the same, naming the consumers behind (read models and
// money are not compared: they would differ for that reason alone), and
// RunDemo fails with ErrDemoFailed. It used to end with an error and no
// summary.
func TestDemoReportsConsumersBehind(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	s, err := orders.RunDemo(context.Background(), stores["memory"](t), &orders.DemoConfig{
		Orders: 20, Customers: 4, Seed: 1, Lag: time.Second,
		SettleTimeout: 50 * time.Millisecond, QuiesceTimeout: 50 * time.Millisecond, Out: &buf,
	})
	require.ErrorIs(t, err, orders.ErrDemoFailed, buf.String())
	require.False(t, s.OK())
	require.NotEmpty(t, s.Behind, buf.String())
	require.Contains(t, buf.String(), "CONSUMERS BEHIND the feed", "the summary is printed")
	require.NotContains(t, buf.String(), "every read model equals a clean rebuild", "read models were not compared")
}

// RunDemo refuses what the run cannot do rather than start it: more
// orders than it plans in memory, or a lag whose 8× stall outlasts a
// customer's wait (a huge one overflowed into a stall that never came).
func TestDemoRefusesWhatItCannotRun(t *testing.T) {
	t.Parallel()
	for _, mod := range []func(*orders.DemoConfig){
		func(c *orders.DemoConfig) { c.Orders = orders.MaxDemoOrders + 1 },
		func(c *orders.DemoConfig) { c.Lag = orders.MaxDemoLag + time.Nanosecond },
		func(c *orders.DemoConfig) { c.Lag = 1_000_000 * time.Hour },
	} {
		var out bytes.Buffer
		c := demoConfig(&out)
		mod(c)
		_, err := orders.RunDemo(t.Context(), stores["memory"](t), c)
		require.Error(t, err)
		require.Empty(t, out.String(), "nothing ran")
	}
	require.Less(t, 8*orders.MaxDemoLag, orders.DefaultDemoSettleTimeout, "the longest stall ends before a customer stops waiting")
}
