package signal

import "context"

// Await waits for done until ctx ends. A done already closed counts
// whatever ctx says, so stopping what has stopped succeeds with an ended
// ctx too: select alone would pick ctx's end as often as not.
func Await(ctx context.Context, done <-chan struct{}) error {
	select {
	case <-done:
		return nil
	default:
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
