package saga

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/internal/rowjson"
)

// TestStoredJSONSizeIsWhatTheRowHolds: over random bytes (quotes,
// backslashes, control characters, U+2028, invalid UTF-8, any rune), size
// is the length of what MarshalJSON writes, which is what rowjson writes
// for the document's text, and the text decodes back unchanged.
func TestStoredJSONSizeIsWhatTheRowHolds(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	pieces := []string{`"`, `\`, "\x00", "\b", "\n", "\x1f", "\x7f", "<", "&", "a", "é", "\u2028", "\u2029", "😀", "\xff", "\xe2\x80"}
	for range 2000 {
		var b []byte
		for range rng.IntN(40) {
			if rng.IntN(4) == 0 {
				b = append(b, byte(rng.IntN(256)))
			} else {
				b = append(b, pieces[rng.IntN(len(pieces))]...)
			}
		}
		got, err := storedJSON(b).MarshalJSON()
		require.NoError(t, err)
		require.Len(t, got, storedJSON(b).size(), "%q", b)
		want, err := rowjson.Marshal(string(b))
		require.NoError(t, err)
		if len(b) > 0 {
			require.Equal(t, string(want), string(got))
		}
	}
}

// TestStoredJSONReadsBothFormats: an instance's state and its
// compensations' payloads come back from the row exactly as they were
// given, and a row written before documents were kept as text (the JSON
// itself under "state" and "payload", as jsonb gives it back) reads as
// that JSON, compacted, whatever it is: a string holding JSON text ("42",
// "null", "[]") stays that string.
func TestStoredJSONReadsBothFormats(t *testing.T) {
	t.Parallel()
	docs := []string{`{"b":1,"a":[1e-300,2]}`, `"x"`, `"42"`, `"null"`, `"[]"`, `"true"`, `null`, `1e-300`, `{"s":"<\u2028>\\\""}`, `98765`}
	for _, doc := range docs {
		in := instance{Saga: "s", ID: "1", State: storedJSON(doc), Compensations: []commandRecord{{Type: "t", Payload: storedJSON(doc)}}}
		b, err := rowjson.Marshal(&in)
		require.NoError(t, err)
		var back instance
		require.NoError(t, json.Unmarshal(b, &back), "%s", b)
		require.Equal(t, doc, string(back.State), "%s", b)
		require.Equal(t, doc, string(back.Compensations[0].Payload), "%s", b)
	}
	for earlier, want := range map[string]string{
		`{"a": [1, 2], "bb": 0.0000001}`: `{"a":[1,2],"bb":0.0000001}`,
		`"x"`:                            `"x"`,
		`"12345"`:                        `"12345"`,
		`"null"`:                         `"null"`,
		`"[]"`:                           `"[]"`,
		`"{not json"`:                    `"{not json"`,
		`[]`:                             `[]`,
	} {
		row := `{"saga":"s","id":"1","state":` + earlier + `,"compensations":[{"type":"t","schema_version":1,"payload":` + earlier + `}]}`
		var in instance
		require.NoError(t, json.Unmarshal([]byte(row), &in), row)
		require.Equal(t, want, string(in.State), row)
		require.Equal(t, want, string(in.Compensations[0].Payload), row)
	}
	var in instance
	require.NoError(t, json.Unmarshal([]byte(`{"saga":"s","id":"1","state":null}`), &in))
	require.False(t, in.hasState(), "a row without state")
	b, err := rowjson.Marshal(&in)
	require.NoError(t, err)
	require.Contains(t, string(b), `"state_text":null`)
	require.JSONEq(t, `null`, string(in.State.document()), "Info shows no state as JSON null")
}
