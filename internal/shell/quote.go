package shell

import "strings"

// Quote returns s as one single-quoted shell word: any text but NUL,
// quotes included.
func Quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Word returns s as one shell word: as it is when nothing in it is
// special to the shell, else quoted.
func Word(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789@%+=:,./_-~") == "" && s[0] != '~' {
		return s
	}
	return Quote(s)
}
