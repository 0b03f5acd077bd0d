package main

import (
	"runtime/debug"
)

// develVersion is what --version prints when the build carries no module
// version, e.g. a binary built with `go build` inside a checkout.
const develVersion = "devel"

// version is converge's version as the Go toolchain recorded it: the module
// version for `go install github.com/converge-es/converge/cmd/converge@v1.2.3`,
// else "devel" followed by the VCS revision when the build knows it.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return develVersion
	}
	return versionFrom(info)
}

func versionFrom(info *debug.BuildInfo) string {
	// "(devel)" is what the toolchain records for a build from a checkout.
	if v := info.Main.Version; v != "" && v != "(devel)" {
		return v
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return develVersion
	}
	rev = rev[:min(len(rev), 12)]
	if modified == "true" {
		rev += ", modified"
	}
	return develVersion + " (" + rev + ")"
}
