package pgstore

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzTopKeys: topKeys finds a metadata key exactly when a JSON decoder
// finds it among the object's own keys (not in values, not nested).
func FuzzTopKeys(f *testing.F) {
	for _, s := range []string{
		`{}`, `{"correlation_id":"a"}`, `{"Correlation_ID":"a","causation_id":"correlation_id"}`,
		`{"extra":{"correlation_id":"x"},"causation_id":"c"}`, `{"a":["correlation_id",{"extra":1}],"extra":{}}`,
		`{"a":"\"correlation_id\"","b":"x\\"}`, `{"correlation_id":"a","extra":{"k":"v"},"causation_id":"b"}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		var keys map[string]json.RawMessage
		if json.Unmarshal([]byte(s), &keys) != nil || keys == nil {
			return // not an object: the store's jsonb column holds only what decoded
		}
		// PostgreSQL gives keys back unescaped; a key with an escape is not
		// one jsonb would print.
		for k := range keys {
			b, _ := json.Marshal(k)
			if string(b) != `"`+k+`"` {
				return
			}
		}
		corr, cause, extra := topKeys([]byte(s))
		_, wantCorr := keys["correlation_id"]
		_, wantCause := keys["causation_id"]
		_, wantExtra := keys["extra"]
		require.Equal(t, []bool{wantCorr, wantCause, wantExtra}, []bool{corr, cause, extra}, "%s", s)
	})
}
