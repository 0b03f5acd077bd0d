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

// TestStoredJSONReadsBothFormats: a document comes back as it was given,
// and a value of a row written before documents were kept as text (the
// JSON itself, as jsonb gives it back) decodes to that JSON, compacted.
func TestStoredJSONReadsBothFormats(t *testing.T) {
	t.Parallel()
	for _, doc := range []string{`{"b":1,"a":[1e-300,2]}`, `"x"`, `"42"`, `null`, `1e-300`, `{"s":"<\u2028>\\\""}`} {
		b, err := storedJSON(doc).MarshalJSON()
		require.NoError(t, err)
		var s string
		require.NoError(t, json.Unmarshal(b, &s), "held as a string")
		var got storedJSON
		require.NoError(t, json.Unmarshal(b, &got))
		require.Equal(t, doc, string(got))
	}
	for earlier, want := range map[string]string{
		`{"a": [1, 2], "bb": 0.0000001}`: `{"a":[1,2],"bb":0.0000001}`,
		`"x"`:                            `"x"`,
		`"{not json"`:                    `"{not json"`,
		`null`:                           `null`,
		`[]`:                             `[]`,
	} {
		var got storedJSON
		require.NoError(t, json.Unmarshal([]byte(earlier), &got), earlier)
		require.Equal(t, want, string(got), earlier)
	}
	var in instance
	require.NoError(t, json.Unmarshal([]byte(`{"saga":"s","id":"1"}`), &in))
	require.False(t, in.hasState(), "a row without state")
	b, err := rowjson.Marshal(&in)
	require.NoError(t, err)
	require.Contains(t, string(b), `"state":null`)
}
