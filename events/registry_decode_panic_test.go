package events_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// touchy is a payload type whose UnmarshalJSON panics on a payload it
// does not expect, as a hand-written decoder with an unchecked type
// assertion does.
type touchy struct{ Name string }

func (t *touchy) UnmarshalJSON(b []byte) error {
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	t.Name = m["name"].(string) //nolint:errcheck // panics when "name" is missing, on purpose
	return nil
}

// TestDecodeTurnsAPanicIntoADecodeError: an upcaster, or a type's
// UnmarshalJSON, that panics on one odd payload makes Decode (and
// DecodeAs) return a *DecodeError saying what panicked and with what, as
// if it had returned an error, so every reader (a command processor, a
// saga, a projection, an aggregate's Load) handles the payload as one that
// does not decode instead of losing the process or its delivery to the
// panic. Payloads they take decode as before.
func TestDecodeTurnsAPanicIntoADecodeError(t *testing.T) {
	t.Parallel()
	reg := events.NewRegistry()
	events.RegisterVersioned[regA](reg, "upcast.me", 2, events.Upcaster{From: 1, Func: func(p json.RawMessage) (json.RawMessage, error) {
		var m map[string]any
		if err := json.Unmarshal(p, &m); err != nil {
			return nil, err
		}
		m["N"] = m["n"].(float64) //nolint:errcheck // panics when "n" is missing, on purpose
		return json.Marshal(m)
	}})
	events.Register[touchy](reg, "touchy")

	for _, c := range []struct {
		env  events.Envelope
		says []string
	}{
		{
			events.Envelope{ID: "1", Type: "upcast.me", SchemaVersion: 1, Payload: json.RawMessage(`{"x":1}`)},
			[]string{`"upcast.me" (schema v1)`, "the upcaster from v1 panicked", "interface conversion"},
		},
		{
			events.Envelope{ID: "2", Type: "touchy", SchemaVersion: 1, Payload: json.RawMessage(`{"x":1}`)},
			[]string{`"touchy"`, "decoding into *events_test.touchy panicked", "interface conversion"},
		},
	} {
		var got any
		var err error
		require.NotPanics(t, func() { got, err = reg.Decode(c.env) }, c.env.Type)
		require.Nil(t, got)
		var de *events.DecodeError
		require.True(t, errors.As(err, &de), "%s: %v is a *DecodeError", c.env.Type, err)
		require.ErrorIs(t, err, events.ErrDecode)
		require.Equal(t, c.env.Type, de.Type)
		for _, s := range c.says {
			require.ErrorContains(t, err, s)
		}
		// The panic says what to do; the guess made for a decoder's
		// error would send the reader looking for a missing upcaster.
		require.NotContains(t, err.Error(), "is an upcaster missing")
	}
	require.NotPanics(t, func() {
		_, err := events.DecodeAs[touchy](reg, events.Envelope{Type: "touchy", Payload: json.RawMessage(`{}`)})
		require.ErrorIs(t, err, events.ErrDecode)
	})

	v, err := reg.Decode(events.Envelope{Type: "upcast.me", SchemaVersion: 1, Payload: json.RawMessage(`{"n":4}`)})
	require.NoError(t, err)
	require.Equal(t, regA{N: 4}, v)
	v, err = reg.Decode(events.Envelope{Type: "touchy", Payload: json.RawMessage(`{"name":"x"}`)})
	require.NoError(t, err)
	require.Equal(t, touchy{Name: "x"}, v)
}
