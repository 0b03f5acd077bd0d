// Package appendhook holds the registry of feed.AppendHooks both stores
// share: which hooks an append must run, decided from the stored type names
// of its events before anything is encoded twice.
package appendhook
