package lag_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
)

// TestTableShowsAFreshHeartbeat: a holder heard from at the very moment
// of the pass shows a heartbeat of 0s, not "-", which means never.
func TestTableShowsAFreshHeartbeat(t *testing.T) {
	t.Parallel()
	b := setup(t, &lag.Config{Projections: []lag.Target{{Name: "orders"}, {Name: "idle"}}})
	head := b.store.append(3)
	b.store.commit("orders", head) // its heart beats now
	var out bytes.Buffer
	require.NoError(t, lag.Table(&out, []lag.Report{b.check(t, "orders"), b.check(t, "idle")}))
	lines := strings.Split(out.String(), "\n")
	orders, idle := strings.Fields(lines[1]), strings.Fields(lines[2])
	require.Equal(t, "0s", orders[4], "a heartbeat heard now:\n%s", out.String())
	require.Equal(t, "-", idle[4], "no heartbeat ever:\n%s", out.String())
}
