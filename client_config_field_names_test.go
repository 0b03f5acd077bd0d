package converge_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/saga"
)

type fieldNamesStarted struct{ ID string }

// TestConfigErrorsNameTheClientField: a refused converge.Config setting is
// named as the caller wrote it, not after the internal configuration the
// client builds from it (saga.EngineConfig, feed.ProcessorConfig, a
// command processor's subscriber), which the caller never sees.
func TestConfigErrorsNameTheClientField(t *testing.T) {
	t.Parallel()
	reg := events.NewRegistry()
	events.Register[fieldNamesStarted](reg, "field_names.started")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	flow := saga.New[struct{}]("s", nil)
	saga.StartOn(flow, func(e fieldNamesStarted, _ events.Envelope) string { return e.ID },
		func(*saga.Step[struct{}], fieldNamesStarted) error { return nil })
	leaseTTL := func(d time.Duration) (c feed.SubscriberConfig) { c.LeaseTTL = d; return c }
	for _, tc := range []struct {
		want string
		cfg  converge.Config
	}{
		{"converge: Config.SagaRetention is 1s", converge.Config{Sagas: []saga.Definition{flow}, SagaRetention: time.Second}},
		{"converge: Config.SagaProcessor: ", converge.Config{Sagas: []saga.Definition{flow}, SagaProcessor: "bad\x01name"}},
		{"converge: saga processor (Config.SagaProcessor): ", converge.Config{Sagas: []saga.Definition{flow}, SagaProcessor: "eu/sagas"}},
		{"converge: Config.Subscriber: feed: SubscriberConfig.LeaseTTL is -1ns", converge.Config{Sagas: []saga.Definition{flow}, Subscriber: leaseTTL(-1)}},
		{"converge: Config.Subscriber: feed: SubscriberConfig.LeaseTTL is 1ms", converge.Config{Subscriber: leaseTTL(time.Millisecond)}},
	} {
		_, err := converge.NewClient(store, &tc.cfg)
		require.Error(t, err, tc.want)
		require.Contains(t, err.Error(), tc.want)
	}
}
