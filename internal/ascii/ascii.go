// Package ascii holds the fast path of converge's text checks.
//
// Names, ids and row keys are checked on every append and row write, and
// nearly all of them are printable ASCII: valid UTF-8 with no character
// that any of the checks refuses (each refuses, below U+0080, exactly the
// C0 controls and DEL). One pass over the bytes settles those; the rest
// take the checks' full path.
package ascii

// Printable reports whether s holds only bytes from 0x20 to 0x7E.
func Printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}
