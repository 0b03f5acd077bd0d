// Package clocktest is the clock tests move by hand, for every service that
// takes an events.Clock.
package clocktest
