package pgstore_test

import (
	"net"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/pgstore"
)

// TestNewSaysWhenPostgreSQLIsUnreachable: a pool aimed at a port nobody
// listens on fails New at its first start-up check, with the cause and a
// hint, instead of a store that fails later at its first append.
func TestNewSaysWhenPostgreSQLIsUnreachable(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // the port is now free: connections are refused
	pool, err := pgxpool.New(t.Context(), "postgres://postgres@"+addr+"/test?connect_timeout=5")
	require.NoError(t, err, "pgxpool connects lazily")
	defer pool.Close()
	st, err := pgstore.New(t.Context(), pool, &pgstore.Config{DisableListen: true})
	require.Nil(t, st)
	require.ErrorContains(t, err, "is PostgreSQL reachable?")
	require.ErrorContains(t, err, addr, "the error names where it tried")
}
