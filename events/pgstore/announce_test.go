package pgstore_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/pgstore"
)

// TestAnnouncedUnitWakesOtherProcesses: a unit that only writes rows
// wakes other processes' readers when it commits if it called Announce,
// as an append would (a saga step scheduling a timer and appending
// nothing relies on it to reach the other processes' timer loops).
func TestAnnouncedUnitWakesOtherProcesses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a := setup(t, nil, 4)
	b, err := pgstore.New(ctx, a.db.Pool, &pgstore.Config{Schema: a.db.Schema})
	require.NoError(t, err)
	defer b.Close()
	awaitHealthy(t, b, true)
	awaitHealthy(t, a.store, true)
	// Settle: the stores' hellos and an append reach b before the unit.
	wake := b.Wake()
	_, err = a.store.Append(ctx, "settle-1", events.NoStream, raw(1))
	require.NoError(t, err)
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("an append did not wake the other process")
	}
	time.Sleep(200 * time.Millisecond)

	u, err := a.store.Checkpoints().Begin(ctx)
	require.NoError(t, err)
	require.NoError(t, u.Rows().Put(ctx, "ns", "t", "k", json.RawMessage(`1`), events.MakeToken(1, 1)))
	an, ok := u.(feed.Announcer)
	require.True(t, ok, "a PostgreSQL unit is a feed.Announcer")
	an.Announce()
	wake = b.Wake()
	require.NoError(t, u.Commit(ctx))
	select {
	case <-wake:
	case <-time.After(10 * time.Second):
		t.Fatal("an announced unit's commit did not wake the other process")
	}

	// Announce on an ended unit does nothing (and does not panic).
	an.Announce()
}
