package ascii_test

import (
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/converge-es/converge/internal/ascii"
)

// TestPrintableIsTheASCIIPartOfTheChecks: every single byte is Printable
// exactly when it is valid UTF-8 on its own and neither a Unicode control
// (Cc) nor DEL, the rule the checks that use it apply.
func TestPrintableIsTheASCIIPartOfTheChecks(t *testing.T) {
	t.Parallel()
	for b := range 256 {
		s := string([]byte{byte(b)})
		want := utf8.ValidString(s) && !unicode.Is(unicode.Cc, rune(b))
		if got := ascii.Printable(s); got != want {
			t.Errorf("Printable(%q) = %v, want %v", s, got, want)
		}
	}
	if !ascii.Printable("") || !ascii.Printable("bench_order/o1/3f1c") || ascii.Printable("caf\u00e9") || ascii.Printable("a\u2028b") {
		t.Error("Printable misjudges a whole string")
	}
}
