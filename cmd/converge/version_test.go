package main

import (
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestVersionFlag(t *testing.T) {
	t.Parallel()
	out, err := runCLI(t, "--version")
	require.NoError(t, err)
	// A test binary carries no module version: the fallback is printed.
	require.Regexp(t, `^converge devel( \([0-9a-f]+(, modified)?\))?\n$`, out)
}

func TestVersionFrom(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		info debug.BuildInfo
		want string
	}{
		{"released", debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, "v1.2.3"},
		{"checkout without VCS", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, "devel"},
		{"no version at all", debug.BuildInfo{}, "devel"},
		{"checkout", debug.BuildInfo{
			Main:     debug.Module{Version: "(devel)"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123456789abcdef0123"}, {Key: "vcs.modified", Value: "false"}},
		}, "devel (0123456789ab)"},
		{"modified checkout", debug.BuildInfo{
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc"}, {Key: "vcs.modified", Value: "true"}},
		}, "devel (abc, modified)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			require.Equal(t, tc.want, versionFrom(&tc.info))
		})
	}
}
