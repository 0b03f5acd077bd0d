package saga_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
)

func init() {
	storeMakers["postgres"] = func(t *testing.T, reg *events.Registry) saga.Store {
		t.Helper()
		db := pgtest.New(t, nil)
		st, err := pgstore.New(context.Background(), db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
		require.NoError(t, err)
		t.Cleanup(func() { _ = st.Close() })
		return st
	}
}
