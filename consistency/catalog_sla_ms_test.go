package consistency_test

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
)

// TestCatalogSLAMillisRoundsUp: the catalog endpoint's sla_ms is the SLA
// in whole milliseconds rounded up, so any SLA has one, a sub-millisecond
// one included (it used to round to 0 and be left out, as if the model
// had no SLA), for random SLAs from a nanosecond to an hour and near the
// longest a Duration holds.
func TestCatalogSLAMillisRoundsUp(t *testing.T) {
	t.Parallel()
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	for range 200 {
		// Spread over magnitudes: mostly under a second, some far over.
		sla := time.Duration(1 + r.Int64N(int64(time.Microsecond)<<r.IntN(32)))
		if r.IntN(4) == 0 {
			// The longest SLAs, where rounding up must not overflow.
			sla = time.Duration(math.MaxInt64 - r.Int64N(int64(2*time.Millisecond)))
		}
		var c consistency.Catalog
		c.Register(consistency.ReadModel{Name: "m", Class: consistency.Eventual, SLA: sla})
		rec := httptest.NewRecorder()
		c.Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		require.Equal(t, http.StatusOK, rec.Code)
		var body struct {
			ReadModels []struct {
				SLA       string `json:"sla"`
				SLAMillis *int64 `json:"sla_ms"`
			} `json:"read_models"`
		}
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
		require.Len(t, body.ReadModels, 1)
		got := body.ReadModels[0]
		require.Equal(t, sla.String(), got.SLA)
		require.NotNil(t, got.SLAMillis, "seed %d: sla %s has sla_ms", seed, sla)
		// In whole milliseconds, as the product could overflow a Duration.
		want := int64(sla / time.Millisecond)
		if sla%time.Millisecond != 0 {
			want++
		}
		require.Equal(t, want, *got.SLAMillis, "seed %d: sla %s", seed, sla)
	}
}
