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
