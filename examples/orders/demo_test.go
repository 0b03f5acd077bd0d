package orders_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/examples/orders"
	"github.com/converge-es/converge/internal/pgtest"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/jackc/pgx/v5/pgxpool.(*Pool).backgroundHealthCheck"),
	)
}

func registry() *events.Registry {
	reg := events.NewRegistry()
	orders.Register(reg)
	return reg
}

func checkOutcome(t *testing.T, out *orders.Outcome, narrative string) {
	t.Helper()
	require.Equal(t, map[string]string{"o-1": orders.StatusPaid, "o-2": orders.StatusCancelled, "o-3": orders.StatusPaid}, out.Statuses)
	require.Equal(t, 3, out.CustomerOrders)
	require.True(t, out.StaleRead.Stale, "the read while order_summary was stopped must be flagged stale")
	require.EqualValues(t, 1, out.StaleRead.Behind)
	require.False(t, out.FreshRead.Stale)
	require.Contains(t, narrative, "STALE (1 events behind")
	require.Contains(t, narrative, "| `customer_orders` | strong |")
	require.Contains(t, narrative, "BREACH", "the paused projection's lag report")
}

func TestDemoInMemory(t *testing.T) {
	t.Parallel()
	st, err := memstore.New(&memstore.Config{Registry: registry()})
	require.NoError(t, err)
	defer st.Close()
	var buf bytes.Buffer
	out, err := orders.Run(context.Background(), &orders.Config{Store: st, Out: &buf})
	require.NoError(t, err, buf.String())
	checkOutcome(t, out, buf.String())

	// The README's table of read models is the catalog's generated table.
	readme, err := os.ReadFile("../../README.md")
	require.NoError(t, err)
	table := buf.String()[strings.Index(buf.String(), "| Read model |"):]
	require.Contains(t, string(readme), strings.TrimSpace(table), "regenerate the README's read-model table from `converge demo`")
}

func TestDemoOnPostgreSQL(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 12})
	ctx := context.Background()
	st, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, Registry: registry()})
	require.NoError(t, err)
	defer st.Close()
	var buf bytes.Buffer
	out, err := orders.Run(ctx, &orders.Config{Store: st, Out: &buf})
	require.NoError(t, err, buf.String())
	checkOutcome(t, out, buf.String())
}
