// Package drive runs a handler over the feed for tests: each event in a
// unit of its own, committed after the handler returns. It stands in for
// feed.Processor where a test wants to step the feed by hand (the saga
// fixture, sagatest, steps the feed with it so that every expectation holds
// the moment a call returns).
package drive
