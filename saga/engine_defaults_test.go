package saga_test

import (
	"testing"
	"testing/quick"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/saga"
)

// TestEngineConfigDefaults: a field of EngineConfig left zero runs with its
// documented default (GateTimeout, SweepInterval 5s, TimerSafetyInterval
// 30s, ConflictRetries, Retention 7 days, DrainPerTurn 100), and a field
// that is set keeps its value, for random mixes of set and unset fields.
func TestEngineConfigDefaults(t *testing.T) {
	t.Parallel()
	require.Equal(t, 5*time.Second, saga.DefaultSweepInterval, "the doc of SweepInterval says 5s")
	require.Equal(t, 30*time.Second, saga.DefaultTimerSafetyInterval, "the doc of TimerSafetyInterval says 30s")
	require.Equal(t, 7*24*time.Hour, saga.DefaultRetention, "the doc of Retention says 7 days")
	require.Equal(t, 100, saga.DefaultDrainPerTurn, "the doc of DrainPerTurn says 100")
	store := newStore(t, nil)
	check := func(gate, sweep, safety uint32, retries uint8, retention uint32, drain uint8, set uint8) bool {
		pick := func(bit uint8, v time.Duration) time.Duration {
			if set&(1<<bit) == 0 {
				return 0
			}
			return v
		}
		cfg := saga.EngineConfig{
			Store: store, Sagas: []saga.Definition{orderSaga(false)},
			GateTimeout:         pick(0, time.Duration(gate)+1),
			SweepInterval:       pick(1, time.Duration(sweep)+1),
			TimerSafetyInterval: pick(2, time.Duration(safety)+1),
			ConflictRetries:     int(pick(3, time.Duration(retries)+1)),
			Retention:           pick(4, saga.MinRetention+time.Duration(retention)),
			DrainPerTurn:        int(pick(5, time.Duration(drain)+1)),
		}
		eng, err := saga.NewEngine(&cfg)
		require.NoError(t, err)
		got := saga.ConfigOf(eng)
		or := func(v, def time.Duration) time.Duration {
			if v == 0 {
				return def
			}
			return v
		}
		return got.GateTimeout == or(cfg.GateTimeout, saga.DefaultGateTimeout) &&
			got.SweepInterval == or(cfg.SweepInterval, saga.DefaultSweepInterval) &&
			got.TimerSafetyInterval == or(cfg.TimerSafetyInterval, saga.DefaultTimerSafetyInterval) &&
			got.ConflictRetries == int(or(time.Duration(cfg.ConflictRetries), saga.DefaultConflictRetries)) &&
			got.Retention == or(cfg.Retention, saga.DefaultRetention) &&
			got.DrainPerTurn == int(or(time.Duration(cfg.DrainPerTurn), saga.DefaultDrainPerTurn))
	}
	require.NoError(t, quick.Check(check, &quick.Config{MaxCount: 500}))
	require.True(t, check(0, 0, 0, 0, 0, 0, 0), "a zero config runs on the defaults")
}
