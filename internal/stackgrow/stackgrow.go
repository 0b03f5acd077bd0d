// Package stackgrow grows a goroutine's stack in one step.
//
// Watermill's router runs each delivery in a goroutine of its own, which
// starts on a small stack. A delivery of converge (a unit's reads, JSON
// decoding and encoding, the store's writes) goes deep enough that the
// runtime grew that stack three times per delivery, each time copying
// every frame on it: about a tenth of a saga's CPU in memory. Grown at
// once, while the stack is still shallow, it is copied once, with few
// frames on it.
package stackgrow

// frame is Reserve's frame. On a stack of 2 KiB (a new goroutine's) with
// little on it, the runtime doubles the stack until the frame fits: to
// 16 KiB, the largest size it takes from its per-P cache of stacks, and
// enough for the deliveries of the saga benchmark. A larger frame would
// take stacks from the heap and clear more bytes per call.
const frame = 8 << 10

// Reserve makes room on the calling goroutine's stack for about frame
// bytes of calls, so that the calls that follow do not grow it step by
// step. It has no other effect.
//
//go:noinline
func Reserve() {
	var b [frame]byte
	keep(b[:])
}

// keep uses b, so the compiler keeps Reserve's frame.
//
//go:noinline
func keep(b []byte) { _ = b }
