package saga_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
	"github.com/converge-es/converge/saga"
	"github.com/converge-es/converge/saga/internal/drive"
)

// claimTrio is one event for three sagas, each correlated by one field.
type claimTrio struct {
	Q string `json:"q"`
	P string `json:"p"`
	K string `json:"k"`
}

// A unit claims the ids its head found absent together. One of them may
// have been started meanwhile by another unit and be locked by a third,
// whose head found it, and which is about to claim an id the first unit
// claims too: the first must wait for that instance before it holds any
// claim, or the two deadlock (PostgreSQL aborts one). Unit A's head finds
// sp/p and sk/k absent; C starts sp/p; B's head locks sp/p and finds sk/k
// absent; then A claims while B still runs.
func TestClaimsTakenTogetherDoNotDeadlockWithHeadLocks(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	reg := registry()
	events.Register[claimTrio](reg, "claims.trio")
	db := pgtest.New(t, nil)
	store, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })

	var mu sync.Mutex
	gates := map[string]chan struct{}{}
	entered := map[string]chan struct{}{}
	sq := saga.New[struct{}]("sq", nil)
	saga.StartOn(sq, func(e claimTrio, _ events.Envelope) string { return e.Q }, func(_ *saga.Step[struct{}], e claimTrio) error {
		mu.Lock()
		g, en := gates[e.Q], entered[e.Q]
		mu.Unlock()
		if g != nil {
			close(en)
			<-g
		}
		return nil
	})
	sp := saga.New[struct{}]("sp", nil)
	saga.StartOn(sp, func(e claimTrio, _ events.Envelope) string { return e.P }, func(*saga.Step[struct{}], claimTrio) error { return nil })
	sk := saga.New[struct{}]("sk", nil)
	saga.StartOn(sk, func(e claimTrio, _ events.Envelope) string { return e.K }, func(*saga.Step[struct{}], claimTrio) error { return nil })
	b := newBareOn(t, store, sq, sp, sk)

	var emu sync.Mutex
	var errs []error
	run := func(tr claimTrio) error {
		env := b.append(t, "trio-"+tr.Q, tr)
		return drive.Unit(ctx, store, 1, func(ctx context.Context) error {
			err := b.engine.Handle(ctx, env)
			if err != nil {
				emu.Lock()
				errs = append(errs, err)
				emu.Unlock()
			}
			return err
		})
	}
	require.NoError(t, run(claimTrio{Q: "qa", P: "p0", K: "k0"}))
	require.NoError(t, run(claimTrio{Q: "qb", P: "p1", K: "k1"}))
	mu.Lock()
	for _, q := range []string{"qa", "qb"} {
		gates[q], entered[q] = make(chan struct{}), make(chan struct{})
	}
	mu.Unlock()
	doneA, doneB := make(chan error, 1), make(chan error, 1)
	go func() { doneA <- run(claimTrio{Q: "qa", P: "p", K: "k"}) }()
	<-entered["qa"]
	require.NoError(t, run(claimTrio{Q: "qc", P: "p", K: "kc"}))
	go func() { doneB <- run(claimTrio{Q: "qb", P: "p", K: "k"}) }()
	<-entered["qb"]
	close(gates["qa"])
	// Let A go on until it waits on a lock (or ends), then B.
	var errA error
	aDone := false
	for !aDone {
		if n, err := lockWaits(ctx, db); err == nil && n > 0 {
			break
		}
		select {
		case errA = <-doneA:
			aDone = true
		case <-time.After(5 * time.Millisecond):
		}
	}
	close(gates["qb"])
	if !aDone {
		errA = <-doneA
	}
	errB := <-doneB
	require.NoError(t, errA)
	require.NoError(t, errB)
	emu.Lock()
	defer emu.Unlock()
	require.Empty(t, errs, "a unit failed")
}
