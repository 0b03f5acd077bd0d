// Package browsertest starts the headless Chromium that converge's browser
// tests drive with chromedp: Debian's chromium at /usr/bin/chromium (which
// ./scripts/test installs when it is missing), a throw-away profile, and
// the flags a closed network needs (no background networking, component
// updates or sync, which otherwise try to reach Google's hosts at every
// start).
package browsertest
