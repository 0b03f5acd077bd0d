package bench_test

import (
	"context"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/bench"
	"github.com/converge-es/converge/internal/pgtest"
)

func TestProfRebuild(t *testing.T) {
	db := pgtest.New(t, &pgtest.Config{MaxConns: 8})
	res, err := bench.Rebuild(context.Background(), db.Pool, db.Schema, &bench.RebuildConfig{Events: 200000}, io.Discard)
	require.NoError(t, err)
	t.Logf("%+v", res)
}
