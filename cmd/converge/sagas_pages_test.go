package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/events"
	"github.com/converge-es/converge/saga"
)

// TestSagasListPages: `sagas list` with a small --limit says, after a full
// page, which --after lists the next one, quoted for a shell; following
// those hints lists every instance exactly once, in the order one listing
// gives, whatever the ids hold (quotes, shell and SQL metacharacters).
func TestSagasListPages(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, store := newJobsStore(t)
	jobs := saga.New[cliJob]("jobs", nil)
	saga.StartOn(jobs, func(e cliJobStarted, _ events.Envelope) string { return e.ID },
		func(*saga.Step[cliJob], cliJobStarted) error { return nil })
	eng, err := saga.NewEngine(&saga.EngineConfig{Store: store, Sagas: []saga.Definition{jobs}})
	require.NoError(t, err)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, seed))
	pieces := []string{"a", "'", `"`, "$(x)", ";", "%", "_", "/", " ", "é", "\\", "`", "&"}
	n := 5 + r.IntN(12)
	for i := range n {
		var id strings.Builder
		for range 1 + r.IntN(4) {
			id.WriteString(pieces[r.IntN(len(pieces))])
		}
		fmt.Fprint(&id, i)
		_, err := store.Append(ctx, "job", events.AnyVersion, events.Event{Data: cliJobStarted{ID: id.String()}})
		require.NoError(t, err)
	}
	handleStream(t, store, eng, "job")

	conn := []string{"--database-url", db.URL, "--schema", db.Schema}
	list := func(args ...string) (ids []string, after string) {
		out, err := runCLI(t, append(append([]string{"sagas", "list", "--json"}, args...), conn...)...)
		require.NoError(t, err)
		for line := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
			if hint, ok := strings.CutPrefix(line, "more instances may follow: list them with --after "); ok {
				// What a shell makes of the hint is the cursor.
				word, err := exec.CommandContext(ctx, "sh", "-c", "printf %s "+hint).Output()
				require.NoError(t, err, hint)
				after = string(word)
				continue
			}
			if line == "" {
				continue
			}
			var in saga.Info
			require.NoError(t, json.Unmarshal([]byte(line), &in), line)
			ids = append(ids, in.ID)
		}
		return ids, after
	}
	want, after := list()
	require.Len(t, want, n)
	require.Empty(t, after, "a page that is not full gives no hint")

	limit := 1 + r.IntN(4)
	var got []string
	for page := 0; ; page++ {
		require.LessOrEqual(t, page, n, "paging does not end")
		args := []string{"--limit", fmt.Sprint(limit)}
		if page > 0 {
			args = append(args, "--after", after)
		}
		var ids []string
		ids, after = list(args...)
		got = append(got, ids...)
		if len(ids) == limit {
			require.NotEmpty(t, after, "a full page gives the next page's --after")
		}
		if after == "" {
			break
		}
	}
	require.Equal(t, want, got, "seed %d, pages of %d", seed, limit)
}
