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
