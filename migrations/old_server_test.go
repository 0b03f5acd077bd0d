package migrations_test

import (
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/migrations"
)

// TestOlderServersAreRefusedByName: `converge migrate` (Migrate) and
// pgstore.New ask the server its version first and refuse one older than
// PostgreSQL 13, naming it, before anything else: the stand-in server
// answers every statement with its version, so anything past the check
// would fail otherwise. PostgreSQL 13 itself gets past the check.
func TestOlderServersAreRefusedByName(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		num     int
		version string
		refused bool
	}{
		{120022, "12.22", true},
		{90624, "9.6.24", true},
		{130000, "13.0", false},
	} {
		t.Run(c.version, func(t *testing.T) {
			t.Parallel()
			pool, err := pgxpool.New(t.Context(), pgtest.OldServer(t, c.num, c.version))
			require.NoError(t, err)
			t.Cleanup(pool.Close)
			_, merr := migrations.Migrate(t.Context(), pool, nil)
			_, serr := pgstore.New(t.Context(), pool, &pgstore.Config{DisableListen: true})
			for _, err := range []error{merr, serr} {
				require.Error(t, err, "the stand-in cannot serve anything past the version check")
				if c.refused {
					require.ErrorContains(t, err, "converge needs PostgreSQL 13 or later")
					require.ErrorContains(t, err, "this server is "+c.version)
				} else {
					require.NotContains(t, err.Error(), "converge needs PostgreSQL 13")
				}
			}
		})
	}
}
