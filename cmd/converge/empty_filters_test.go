package main

import (
	"testing"

	"github.com/converge-es/converge/internal/pgtest"
)

// TestEmptyFiltersAreRefused: a name filter given with an empty value (a
// shell variable that is not set, most often) is refused with exit status
// 1, nothing on standard output and a line saying what to pass, instead
// of being read as no filter: `dead-letters list --processor ”` listed
// every dead letter, `sagas list --type ”` every saga type, a reset's
// --to ” went back to the start of the feed, and --schema ” used the
// default schema.
func TestEmptyFiltersAreRefused(t *testing.T) {
	t.Parallel()
	db := pgtest.New(t, nil)
	conn := []string{"--database-url", db.URL, "--schema", db.Schema}
	with := func(args ...string) []string { return append(args, conn...) }
	for want, args := range map[string][]string{
		"--processor is empty (is the variable you passed set?): name a processor, or leave --processor out":       with("dead-letters", "list", "--processor", ""),
		"--type is empty (is the variable you passed set?): name a saga type, or leave --type out":                 with("sagas", "list", "--type", ""),
		`--status "": use one of running, parked`:                                                                  with("sagas", "list", "--status="),
		"--type is empty (is the variable you passed set?)":                                                        with("sagas", "show", "order-1", "--type", ""),
		"--to is empty (is the variable you passed set?): pass a token, or leave --to out":                         with("projections", "reset", "orders", "--to", ""),
		`--schema is empty (is the variable you passed set?): name a schema, or leave --schema out for "converge"`: append(with("lag"), "--schema", ""),
	} {
		refusedOnce(t, want, args...)
	}
}
