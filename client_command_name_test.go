package converge_test

import (
	"context"
	"log/slog"
	"testing"

	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge"
	"github.com/converge-es/converge/command"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
)

type chargeCard struct{ ID string }

// TestNewClientRefusesACommandHandlerNameNoLeaseIsTakenUnder: a command
// handler named with a control character (a trailing newline, as read
// from a config file) has a feed consumer whose lease no store takes, so
// it would never run. NewClient refuses it, naming the handler, instead
// of a client that starts and never handles the command.
func TestNewClientRefusesACommandHandlerNameNoLeaseIsTakenUnder(t *testing.T) {
	t.Parallel()
	reg := events.NewRegistry()
	events.Register[chargeCard](reg, "card.charge")
	store, err := memstore.New(&memstore.Config{Registry: reg})
	require.NoError(t, err)
	defer store.Close()
	h := command.Handle("charge\n", store, events.Aggregate[int]{}, func(c chargeCard) string { return "card-" + c.ID },
		func(context.Context, int, chargeCard) ([]any, error) { return nil, nil })
	cl, err := converge.NewClient(store, &converge.Config{Commands: []cqrs.CommandHandler{h}, Logger: slog.New(slog.DiscardHandler)})
	require.ErrorContains(t, err, `handler "charge\n"`)
	require.ErrorContains(t, err, "without control characters")
	require.Nil(t, cl)
}
