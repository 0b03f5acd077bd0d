package projections_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency"
	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/events/memstore"
	"github.com/converge-es/converge/projections"
)

func TestDefinitionErrors(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"", "Orders", "has space", "a@b", "a/b", "-x"} {
		_, err := projections.NewSafely(name, nil)
		require.Error(t, err, name)
	}
	require.Panics(t, func() { projections.New("", nil) })

	_, err := projections.NewSafely("x", &projections.Config{Class: "sometimes"})
	require.ErrorContains(t, err, "consistency.Eventual or consistency.Strong")
	_, err = projections.NewSafely("x", &projections.Config{Class: consistency.Strong, SLA: time.Second})
	require.ErrorContains(t, err, "Strong")

	p := projections.New("order_summary.v2", nil)
	require.Equal(t, consistency.ReadModel{Name: "order_summary.v2", Class: consistency.Eventual, SLA: projections.DefaultSLA}, p.ReadModel())
	handler := func(context.Context, *projections.Tx, events.Envelope, Deposited) error { return nil }
	projections.On(p, handler)
	require.Panics(t, func() { projections.On(p, handler) }, "a type handled twice")
	require.ErrorContains(t, projections.OnSafely[Deposited](p, nil), "nil handler")
	require.ErrorContains(t, projections.OnSafely(p, func(context.Context, *projections.Tx, events.Envelope, any) error { return nil }), "interface")
}

func TestRunnerConfigErrors(t *testing.T) {
	t.Parallel()
	store, err := memstore.New(&memstore.Config{Registry: newRegistry()})
	require.NoError(t, err)
	defer store.Close()
	ok := balances("ok", nil)

	type unregistered struct{}
	orphan := projections.New("orphan", nil)
	projections.On(orphan, func(context.Context, *projections.Tx, events.Envelope, unregistered) error { return nil })

	for _, tc := range []struct {
		name string
		cfg  projections.RunnerConfig
		want string
	}{
		{"no source", projections.RunnerConfig{Projections: []*projections.Projection{ok}}, "Source is nil"},
		{"no projections", projections.RunnerConfig{Source: store}, "Projections is empty"},
		{"duplicate", projections.RunnerConfig{Source: store, Projections: []*projections.Projection{ok, ok}}, "listed twice"},
		{"no handlers", projections.RunnerConfig{Source: store, Projections: []*projections.Projection{projections.New("bare", nil)}}, "no handlers"},
		{"unregistered type", projections.RunnerConfig{Source: store, Projections: []*projections.Projection{orphan}}, "not registered"},
		{"bad policy", projections.RunnerConfig{Source: store, Projections: []*projections.Projection{ok}, OnFailure: "retry forever"}, "OnFailure"},
		{"bad backoff", projections.RunnerConfig{Source: store, Projections: []*projections.Projection{ok}, BackoffMin: time.Second, BackoffMax: time.Millisecond}, "BackoffMax"},
	} {
		_, err := projections.NewRunner(&tc.cfg)
		require.ErrorContains(t, err, tc.want, tc.name)
	}

	var cat consistency.Catalog
	cat.Register(consistency.ReadModel{Name: "ok", Class: consistency.Eventual, SLA: time.Second})
	_, err = projections.NewRunner(&projections.RunnerConfig{Source: store, Projections: []*projections.Projection{ok}, Catalog: &cat})
	require.ErrorContains(t, err, "declared twice")
}

func TestRunnerLifecycleAndLookups(t *testing.T) {
	t.Parallel()
	f := newMemFixture(t)
	ctx := context.Background()
	r := f.newRunner(t, projections.RunnerConfig{Projections: []*projections.Projection{balances("life", nil)}})

	_, err := r.Status(ctx, "nope")
	require.ErrorIs(t, err, projections.ErrUnknownProjection)
	_, err = r.View("nope").Table("accounts").Get(ctx, "a", new(Account))
	require.ErrorIs(t, err, projections.ErrUnknownProjection)
	require.ErrorIs(t, r.Rebuild(ctx, "life"), projections.ErrNotRunning)
	_, err = r.View("life").Table("").List(ctx, nil)
	require.ErrorIs(t, err, projections.ErrInvalidKey)

	require.NoError(t, r.Start(ctx))
	require.ErrorIs(t, r.Start(ctx), projections.ErrAlreadyStarted)
	require.NoError(t, r.Stop(ctx))
	require.NoError(t, r.Stop(ctx))
	<-r.Stopped()
	require.ErrorIs(t, r.Start(ctx), projections.ErrStopped)
}

func TestTableOperations(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := b.setup(t)
			ctx := context.Background()
			keys := []string{"a", "a\u00ff", "ab", "abc", "b", "\u00e9t\u00e9", "z\U0010ffff"}
			var readOnlyErr atomic.Value
			p := projections.New("tables", nil)
			projections.On(p, func(ctx context.Context, tx *projections.Tx, _ events.Envelope, e Renamed) error {
				t := tx.Table("kv")
				for _, k := range keys {
					if err := t.Put(ctx, k, map[string]string{"k": k}); err != nil {
						return err
					}
				}
				if err := t.Put(ctx, "gone", 1); err != nil {
					return err
				}
				// Reads see the handler's own writes.
				if ok, err := t.Get(ctx, "gone", new(int)); err != nil || !ok {
					return errors.Join(errors.New("own write not visible"), err)
				}
				if err := t.Delete(ctx, "gone"); err != nil {
					return err
				}
				if err := t.Delete(ctx, "never-there"); err != nil {
					return err
				}
				rows, err := t.List(ctx, &projections.ListOptions{Prefix: "a"})
				if err != nil || len(rows) != 4 {
					return errors.Join(errors.New("own writes not listed"), err)
				}
				if err := t.Put(ctx, "", 1); !errors.Is(err, projections.ErrInvalidKey) {
					return errors.New("empty key accepted")
				}
				readOnlyErr.Store(true)
				return nil
			})
			r := f.start(t, projections.RunnerConfig{Projections: []*projections.Projection{p}})
			res := f.append(t, "s-1", Renamed{"x", "y"})
			f.waitFor(t, res.Token, "tables")
			require.Equal(t, true, readOnlyErr.Load())

			view := r.View("tables").Table("kv")
			all, err := view.List(ctx, nil)
			require.NoError(t, err)
			got := []string{}
			for _, row := range all {
				got = append(got, row.Key)
				require.Equal(t, res.Token, row.Token)
				var v map[string]string
				require.NoError(t, row.Decode(&v))
				require.Equal(t, row.Key, v["k"])
			}
			require.Equal(t, slices.Sorted(slices.Values(keys)), got, "byte-wise key order on both backends")

			prefixed, err := view.List(ctx, &projections.ListOptions{Prefix: "a", After: "ab", Limit: 1})
			require.NoError(t, err)
			require.Len(t, prefixed, 1)
			require.Equal(t, "abc", prefixed[0].Key)

			top, err := view.List(ctx, &projections.ListOptions{Prefix: "z\U0010ffff"})
			require.NoError(t, err)
			require.Len(t, top, 1)

			_, ok, err := projections.Get[map[string]string](ctx, view, "gone")
			require.NoError(t, err)
			require.False(t, ok)
			row, ok, err := view.GetRow(ctx, "abc")
			require.NoError(t, err)
			require.True(t, ok)
			require.Equal(t, res.Token, row.Token)
			require.JSONEq(t, `{"k":"abc"}`, string(row.Value))
			rw, isTable := view.(projections.Table)
			require.True(t, isTable)
			require.ErrorIs(t, rw.Put(ctx, "x", 1), projections.ErrReadOnly)
		})
	}
}
