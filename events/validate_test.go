package events_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
)

// FuzzValidatePayload checks that validation never panics, accepts only
// valid JSON, and that what it accepts equals itself by EqualJSON (so a
// retry of the same payload is recognised).
func FuzzValidatePayload(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"a":"\u0000"}`, `"\ud800"`, `"\ud800\udc00"`, `"\ud800\u0041"`, `"x\uDBFF"`,
		`{"a":1,"a":2}`, `{"a":1,"\u0061":2}`, `[1e1000000]`, `1e-400`, `0e-20000`, `[0.5e-3, -0, 1E+2]`,
		"{\"a\":\"\xff\"}", `{"a":{"b":{"a":1}},"b":[{"a":1},{"a":1}]}`, ` [ true , false , null ] `,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		if events.ValidatePayload(p) != nil {
			return
		}
		require.True(t, json.Valid(p))
		require.True(t, events.EqualJSON(p, p), "%s", p)
		var v any
		require.NoError(t, json.Unmarshal(p, &v))
	})
}

func TestExactlyNegativeNamesTheMistake(t *testing.T) {
	t.Parallel()
	_, err := events.Prepare(nil, events.Limits{}, "s-1", events.Exactly(-5),
		[]events.Event{{Data: events.Raw{Type: "t", Payload: []byte(`{}`)}}})
	require.ErrorIs(t, err, events.ErrInvalidEvent)
	require.ErrorContains(t, err, "Exactly(-5)")
	require.Equal(t, "invalid Exactly(-5)", events.Exactly(-5).String())
}

func TestRegisterRefusesBadTypeNames(t *testing.T) {
	t.Parallel()
	type ev struct{}
	reg := events.NewRegistry()
	for _, name := range []string{"", "a\x00b", "a\nb", "a\u0085b", string(make([]byte, events.MaxTypeNameLength+1))} {
		require.ErrorIs(t, events.RegisterSafely[ev](reg, name, 1), events.ErrInvalidEvent, "%q", name)
	}
	require.NoError(t, events.RegisterSafely[ev](reg, "ok.name", 1))
	require.ErrorIs(t, reg.Alias("old\x00name", "ok.name"), events.ErrInvalidEvent)
}
