package pgstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

func TestIsUnavailable(t *testing.T) {
	t.Parallel()
	pgErr := func(code string) error { return fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code}) }
	for name, tc := range map[string]struct {
		err  error
		want bool
	}{
		"admin shutdown 57P01":        {pgErr("57P01"), true},
		"crash shutdown 57P02":        {pgErr("57P02"), true},
		"cannot connect now 57P03":    {pgErr("57P03"), true},
		"connection failure 08006":    {pgErr("08006"), true},
		"too many connections 53300":  {pgErr("53300"), true},
		"unexpected EOF":              {fmt.Errorf("read: %w", io.ErrUnexpectedEOF), true},
		"connection refused":          {&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		"connection reset":            {&net.OpError{Op: "read", Err: syscall.ECONNRESET}, true},
		"closed connection":           {pgconn.ErrConnClosed, true},
		"unique violation 23505":      {pgErr("23505"), false},
		"query canceled 57014":        {pgErr("57014"), false},
		"undefined table 42P01":       {pgErr("42P01"), false},
		"context canceled":            {context.Canceled, false},
		"context deadline exceeded":   {fmt.Errorf("x: %w", context.DeadlineExceeded), false},
		"some other error":            {errors.New("boom"), false},
		"untranslatable character ok": {pgErr("22P05"), false},
	} {
		require.Equal(t, tc.want, isUnavailable(tc.err), name)
		require.Equal(t, tc.want, errors.Is(classify(tc.err), events.ErrUnavailable), name)
		require.ErrorIs(t, classify(tc.err), tc.err, "%s: classify keeps the cause", name)
	}
}

func TestSentUnanswered(t *testing.T) {
	t.Parallel()
	require.False(t, sentUnanswered(&pgconn.PgError{Code: "57P01"}), "the server answered")
	require.True(t, sentUnanswered(io.ErrUnexpectedEOF), "the reply was lost")
	require.True(t, sentUnanswered(context.Canceled), "pgx reports a cancel mid-query as context.Canceled")
	require.True(t, sentUnanswered(fmt.Errorf("x: %w", context.DeadlineExceeded)), "a deadline mid-query")
	require.True(t, sentUnanswered(&net.OpError{Op: "read", Err: syscall.ECONNRESET}), "the connection was reset")
	require.False(t, sentUnanswered(errors.New("failed to encode args[1]: cannot find encode plan")), "refused by the client before sending")
}

func TestAppendRetryConfig(t *testing.T) {
	t.Parallel()
	d := AppendRetry{}.withDefaults()
	require.Equal(t, AppendRetry{
		MaxAttempts: DefaultAppendMaxAttempts, MaxElapsed: DefaultAppendMaxElapsed,
		InitialBackoff: DefaultAppendInitialBackoff, MaxBackoff: DefaultAppendMaxBackoff,
	}, d)
	require.NoError(t, d.validate())
	require.ErrorContains(t, AppendRetry{MaxAttempts: -1}.withDefaults().validate(), "MaxAttempts")
	require.ErrorContains(t, AppendRetry{MaxElapsed: -1}.withDefaults().validate(), "durations")
	c := (&Config{AppendRetry: AppendRetry{MaxBackoff: -1}}).withDefaults()
	require.Error(t, c.validate())

	// Negative limits are refused, as memstore refuses them, not defaulted.
	c = (&Config{Limits: events.Limits{MaxPayloadBytes: -1}}).withDefaults()
	require.ErrorContains(t, c.validate(), "Config.Limits.MaxPayloadBytes")
	c = (&Config{Limits: events.Limits{MaxEventsPerAppend: -1}}).withDefaults()
	require.ErrorContains(t, c.validate(), "Config.Limits.MaxEventsPerAppend")
	c = (&Config{}).withDefaults()
	require.Equal(t, events.Limits{}.WithDefaults(), c.Limits, "zero limits take the defaults")
}
