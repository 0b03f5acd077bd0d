package saga_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
)

// failingRegisterer refuses the Register call numbered failAt (from 0).
type failingRegisterer struct {
	prometheus.Registerer
	failAt, calls int
}

func (f *failingRegisterer) Register(c prometheus.Collector) error {
	f.calls++
	if f.calls-1 == f.failAt {
		return errors.New("refused")
	}
	return f.Registerer.Register(c)
}

// TestMetricsRegisterAllOrNone: NewEngine registers every metric on
// EngineConfig.Registerer or, when one is refused (a collector of the
// same name registered already, or any other error, at a random one of
// them), none: it holds what it did before, and an engine built on it
// once the cause is gone registers them all.
func TestMetricsRegisterAllOrNone(t *testing.T) {
	t.Parallel()
	b := newBare(t, nil)
	def := []saga.Definition{orderSaga(false)}
	probe, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: def})
	require.NoError(t, err)
	all := probe.Metrics().Collectors()
	for _, kind := range []string{"already registered", "refused"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			at := 1 + rand.New(rand.NewPCG(seed, seed)).IntN(len(all)-1) // past the first, so some were registered
			reg := prometheus.NewRegistry()
			var on prometheus.Registerer = reg
			if kind == "already registered" {
				require.NoError(t, reg.Register(all[at]))
			} else {
				on = &failingRegisterer{Registerer: reg, failAt: at}
			}
			_, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: def, Registerer: on})
			require.ErrorContains(t, err, kind)
			// A collector of the same descriptions as one the refused
			// engine registered would be refused: every one but the
			// pre-registered is taken.
			for i, c := range all {
				if i != at || kind != "already registered" {
					require.NoError(t, reg.Register(c), "the refused engine left collector %d of %d registered", i, len(all))
					require.True(t, reg.Unregister(c))
				}
			}
			if kind == "already registered" {
				require.True(t, reg.Unregister(all[at]))
			}
			eng, err := saga.NewEngine(&saga.EngineConfig{Store: b.store, Sagas: def, Registerer: reg})
			require.NoError(t, err, "an engine built once the cause is gone")
			for _, c := range eng.Metrics().Collectors() {
				var are prometheus.AlreadyRegisteredError
				require.ErrorAs(t, reg.Register(c), &are, "every collector is registered")
			}
		})
	}
}
