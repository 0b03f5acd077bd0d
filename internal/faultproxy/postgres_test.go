package faultproxy_test

import (
	"context"
	"net"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/faultproxy"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestCutAfterPostgreSQLAnswered is the package documentation's example,
// on the tests' PostgreSQL server: the statement reaches the server, which
// answers, and the client sees only a cut connection.
func TestCutAfterPostgreSQLAnswered(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	cfg, err := pgx.ParseConfig(pgtest.URL(t))
	require.NoError(t, err)
	server := net.JoinHostPort(cfg.Host, strconv.Itoa(int(cfg.Port)))

	p := faultproxy.New(t, server) // PostgreSQL's host:port
	fired := p.Inject(faultproxy.Fault{Match: faultproxy.Contains("order-42")})
	// Connect through p, without TLS, and run the statement:
	cfg.Host, cfg.Port, cfg.TLSConfig, cfg.Fallbacks = p.Host(), p.Port(), nil, nil
	conn, err := pgx.ConnectConfig(ctx, cfg)
	require.NoError(t, err)
	_, err = conn.Exec(ctx, "SELECT $1::text", "order-42")
	<-fired // the server answered; the client got a cut connection
	require.Error(t, err)
	require.True(t, conn.IsClosed(), "the connection is gone")
	_ = conn.Close(context.Background())
}
