package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/eventstoretest"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/events/pgstore"
	"github.com/converge-es/converge/internal/pgtest"
)

// FuzzAppendValidation appends the same event to memory and to PostgreSQL
// and fails when they disagree: one accepts what the other refuses, or
// either refuses with anything but the documented errors, or what was
// accepted reads back different from what was appended (strings byte for
// byte, numbers by value; see events.EqualJSON). Its seed corpus (below and
// in testdata/fuzz) runs with the normal tests; search further with
//
//	go test ./events/pgstore -run '^$' -fuzz FuzzAppendValidation -fuzztime 60s
func FuzzAppendValidation(f *testing.F) {
	f.Add("order-1", "test.placed", 1, []byte(`{"n":1}`), "corr", "", "")
	f.Add("order-1", "test.placed", 0, []byte(`{"s":"a\u0000b"}`), "", "", "")
	f.Add("order-1", "test.placed", 1, []byte(`{"s":"\ud800"}`), "", "", "")
	f.Add("order-1", "test.placed", 1, []byte(`{"s":"\ud83d\ude00 \u00e9"}`), "", "", "")
	f.Add("order-1", "test.placed", 1, []byte(`{"n":1e1000000}`), "", "", "")
	f.Add("order-1", "test.placed", 1, []byte(`[1e-400, 5e-324, -0, 1E2]`), "", "", "")
	f.Add("order-1", "test.placed", 1, []byte(`{"a":1,"a":2}`), "", "", "")
	f.Add("order-1", "test.placed", -1, []byte(`{}`), "", "", "")
	f.Add("order-1", "test\x00placed", 1, []byte(`{}`), "", "", "")
	f.Add("order-1", strings.Repeat("t", 10_000), 1, []byte(`{}`), "", "", "")
	f.Add("order\u0085-1", "test.placed", 1, []byte(`{}`), "", "", "")
	f.Add("order-1", "test.placed", 1, []byte(`{}`), "c\x00", "k", "v")
	f.Add("order-1", "test.placed", 1, []byte(`{}`), "\xff", "k\x00", "\xc3(")
	f.Add("order-1", "test.placed", 1, []byte("{\"s\":\"\xff\"}"), "", "", "")
	f.Add("order-1", "test.placed", 1, []byte(`0e-20000`), "", "", "")

	ctx := context.Background()
	mem, err := memstore.New(nil)
	require.NoError(f, err)
	f.Cleanup(func() { _ = mem.Close() })
	db := pgtest.New(f, nil)
	pg, err := pgstore.New(ctx, db.Pool, &pgstore.Config{Schema: db.Schema, DisableListen: true, AppendRetry: pgstore.AppendRetry{MaxAttempts: 1}})
	require.NoError(f, err)
	f.Cleanup(func() { _ = pg.Close() })

	f.Fuzz(func(t *testing.T, stream, typeName string, schemaVersion int, payload []byte, corr, extraKey, extraVal string) {
		ev := events.Event{
			ID:       uuid.NewString(),
			Data:     events.Raw{Type: typeName, SchemaVersion: schemaVersion, Payload: json.RawMessage(payload)},
			Metadata: events.Metadata{CorrelationID: corr},
		}
		if extraKey != "" || extraVal != "" {
			ev.Metadata.Extra = map[string]string{extraKey: extraVal}
		}
		mres, merr := mem.Append(ctx, stream, events.AnyVersion, ev)
		pres, perr := pg.Append(ctx, stream, events.AnyVersion, ev)
		if (merr == nil) != (perr == nil) {
			t.Fatalf("the stores disagree on stream %q type %q v%d payload %q metadata %+v:\n memory:     %v\n PostgreSQL: %v",
				stream, typeName, schemaVersion, payload, ev.Metadata, merr, perr)
		}
		if merr != nil {
			for _, err := range []error{merr, perr} {
				require.True(t, errors.Is(err, events.ErrInvalidEvent) || errors.Is(err, events.ErrUnknownType),
					"bad input must be refused as such, got %v", err)
				require.NotContains(t, err.Error(), "SQLSTATE", "refused before any SQL")
			}
			return
		}
		for _, c := range []struct {
			st  events.Store
			res events.AppendResult
		}{{mem, mres}, {pg, pres}} {
			got, err := c.st.ReadStream(ctx, stream, c.res.FirstVersion, 1)
			require.NoError(t, err)
			require.Len(t, got, 1)
			eventstoretest.RequireStoredAsGiven(t, c.st.Registry(), ev, got[0])
		}
	})
}
