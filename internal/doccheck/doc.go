// Package doccheck holds the test that keeps the Go code in package docs
// honest: every Go block of a doc.go comment must be a slice, line for
// line (indentation and blank lines aside), of a test file in the same
// directory, so the compiler and that test back what the doc shows. Shell
// lines, protocol sketches and tables in doc comments are not Go and are
// left alone. It has no code of its own.
package doccheck
