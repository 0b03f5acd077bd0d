package pgstore_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestUnitsWritingTheSameRowsInOppositeOrderNeverDeadlock: a unit's row
// writes go to the server at its commit, in row order, so two units
// writing the same rows, whatever order their handlers wrote them in,
// take the rows' locks in the same order: one waits for the other, and
// neither fails with a deadlock.
func TestUnitsWritingTheSameRowsInOppositeOrderNeverDeadlock(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, &pgtest.Config{MaxConns: 8})
	s := openStore(t, db)
	ctx := context.Background()
	keys := make([]string, 40)
	for i := range keys {
		keys[i] = fmt.Sprintf("k%02d", i)
	}
	for round := range 15 {
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for w := range errs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				order := slices.Clone(keys)
				if w%2 == 1 {
					slices.Reverse(order)
				}
				errs[w] = func() error {
					u, err := s.Checkpoints().Begin(ctx)
					if err != nil {
						return err
					}
					for _, k := range order {
						if err := u.Rows().Put(ctx, "order", "t", k, json.RawMessage(fmt.Sprint(round*10+w)), events.Token{}); err != nil {
							_ = u.Rollback(ctx)
							return err
						}
					}
					return u.Commit(ctx)
				}()
			}()
		}
		wg.Wait()
		for w, err := range errs {
			require.NoError(t, err, "round %d, writer %d", round, w)
		}
	}
}
