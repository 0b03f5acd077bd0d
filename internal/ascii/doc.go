// Package ascii holds the fast path of converge's text checks.
//
// Names, ids and row keys are checked on every append and row write, and
// nearly all of them are printable ASCII: valid UTF-8 with no character
// that any of the checks refuses (each refuses, below U+0080, exactly the
// C0 controls and DEL). One pass over the bytes settles those; the rest
// take the checks' full path.
package ascii
