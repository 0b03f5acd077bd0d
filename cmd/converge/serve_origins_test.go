package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/converge-es/converge/consistency/lag"
	"github.com/converge-es/converge/internal/pgtest"
)

// TestServeRefusesAnIntervalThatOnlyLoads: serve's lag passes have the
// floor of lag --watch; at 1ns serve spun a core without measuring
// anything more.
func TestServeRefusesAnIntervalThatOnlyLoads(t *testing.T) {
	t.Parallel()
	for _, d := range []string{"1ns", "99ms", "-1s", "0s"} {
		_, err := runCLI(t, "serve", "--listen", "127.0.0.1:0", "--interval", d, "--database-url", unreachable)
		require.Error(t, err)
		require.True(t, strings.HasPrefix(err.Error(), "--interval "+d+": "), "got %v", err)
		require.ErrorContains(t, err, "at least 100ms")
	}
	c := &serveCmd{listen: "127.0.0.1:0", sla: lag.UserFacingSLA, interval: minLagInterval, shutdownTimeout: defaultShutdownTimeout}
	require.NoError(t, c.validate(), "the floor itself is an interval")
}

// TestServeRefusesAnAllowOriginThatIsNoOrigin: serve compares each
// --allow-origin with the Origin header as an exact string, so a value
// in another form never matches; it is refused, saying what an origin
// looks like, before anything is opened or migrated.
func TestServeRefusesAnAllowOriginThatIsNoOrigin(t *testing.T) {
	t.Parallel()
	for _, o := range []string{"shop.example", "https://shop.example/", "https://shop.example/app", ""} {
		_, err := runCLI(t, "serve", "--listen", "127.0.0.1:0", "--allow-origin", o, "--database-url", unreachable)
		require.Error(t, err)
		require.Contains(t, err.Error(), "--allow-origin", "--allow-origin %q: got %v", o, err)
	}

	db := pgtest.New(t, &pgtest.Config{SkipMigrate: true})
	// Each with why it is refused and, where one is clear, the origin
	// meant.
	refused := map[string][2]string{
		"":                            {"is empty", ""},
		"shop.example":                {"has no scheme", "https://shop.example"},
		"shop.example:8443":           {"has no scheme", "https://shop.example:8443"},
		"https://shop.example/":       {"ends in a slash", "https://shop.example"},
		"https://shop.example/app":    {"has a path", "https://shop.example"},
		"https://shop.example?x=1":    {"has a query", "https://shop.example"},
		"https://shop.example#top":    {"has a fragment", "https://shop.example"},
		"https://bob@shop.example":    {"has a user", "https://shop.example"},
		"ftp://shop.example":          {`has the scheme "ftp"`, ""},
		"HTTPS://Shop.Example":        {"not in lower case", "https://shop.example"},
		"https://shop.example:443":    {"default port", "https://shop.example"},
		"http://shop.example:80":      {"default port", "http://shop.example"},
		"https://shop.example:0":      {"no valid port", ""},
		"https://shop.example:65536":  {"no valid port", ""},
		"https://shop.example:":       {"no valid port", "https://shop.example"},
		"https://*.shop.example":      {"wildcard", ""},
		"https://":                    {"has no //host", ""},
		"https://shop_example":        {"has no host as browsers write it", ""},
		"https://[fe80::1%25eth0]:80": {"has no host as browsers write it", ""},
		"mailto:shop@example":         {"has no scheme", ""},
	}
	for o, want := range refused {
		args := []string{
			"serve", "--listen", "127.0.0.1:0", "--allow-origin", "https://ok.example", "--allow-origin", o,
			"--database-url", db.URL, "--schema", db.Schema,
		}
		out, err := runCLI(t, args...)
		require.Error(t, err, o)
		msg := err.Error()
		require.True(t, strings.HasPrefix(msg, "--allow-origin "+strconv.Quote(o)+": "), "%q: %v", o, err)
		require.Contains(t, msg, want[0], o)
		require.Contains(t, msg, "scheme://host[:port], such as https://shop.example", "%q: says what an origin looks like", o)
		if want[1] != "" {
			require.Contains(t, msg, "did you mean "+want[1]+"?", o)
		} else {
			require.NotContains(t, msg, "did you mean", o)
		}
		require.NotContains(t, out, "listening on", o)
	}
	var migrated bool
	require.NoError(t, db.Pool.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", db.Schema+".events").Scan(&migrated))
	require.False(t, migrated, "serve refused the origins before it migrated the schema")

	for _, o := range []string{"*", "https://shop.example", "http://localhost:8080", "http://127.0.0.1:9090", "http://[::1]:9090", "https://a-b.c.example:65535"} {
		c := &serveCmd{listen: "127.0.0.1:0", sla: time.Second, interval: time.Second, origins: []string{o}, shutdownTimeout: defaultShutdownTimeout}
		require.NoError(t, c.validate(), o)
	}
}
