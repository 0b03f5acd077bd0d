// Package signal holds the broadcast primitive behind every push wake-up in
// converge: waiters take a channel, a notifier closes it.
package signal
