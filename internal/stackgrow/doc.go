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
