package rowjson

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Text is free text (a failure reason, a note) as a row can hold it: NUL,
// which PostgreSQL's jsonb refuses, and invalid UTF-8 as U+FFFD, and at
// most max bytes (see Clip). Invalid UTF-8 is replaced here, not left to
// encoding/json, so that the length measured is the length stored (JSON
// writes each invalid byte as three).
func Text(s string, max int) string {
	return Clip(storable(s), max)
}

func storable(s string) string {
	return strings.ToValidUTF8(strings.ReplaceAll(s, "\x00", "\uFFFD"), "\uFFFD")
}

// Clip cuts s to at most max bytes on a rune boundary, saying how much was
// left out.
func Clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return fmt.Sprintf("%s… (%d bytes in all)", s[:cut], len(s))
}

// TextWithin is Text with the note of a cut counted in limit: the result
// is at most limit bytes in all, for records that promise that bound. Below the
// note's own length nothing of s is kept but the note.
func TextWithin(s string, limit int) string {
	s = storable(s)
	if len(s) <= limit {
		return s
	}
	note := len(fmt.Sprintf("… (%d bytes in all)", len(s)))
	return Clip(s, max(0, limit-note))
}
