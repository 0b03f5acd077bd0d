package rowjson

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Text is free text (a failure reason, a note) as a row can hold it: NUL,
// which PostgreSQL's jsonb refuses, as U+FFFD, and at most max bytes (see
// Clip). Invalid UTF-8 needs nothing here: encoding/json writes it as
// U+FFFD.
func Text(s string, max int) string {
	return Clip(strings.ReplaceAll(s, "\x00", "\uFFFD"), max)
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
	s = strings.ReplaceAll(s, "\x00", "\uFFFD")
	if len(s) <= limit {
		return s
	}
	note := len(fmt.Sprintf("… (%d bytes in all)", len(s)))
	return Clip(s, max(0, limit-note))
}
