// Package rowjson encodes the values converge's components store in rows
// (feed.Rows) and records.
//
// encoding/json escapes <, > and & for HTML by default, six bytes each. A
// row's value is measured against the store's limit, and a document of
// such characters that fits as written would no longer fit escaped, so
// rows are written without that escaping; the JSON means the same. Text
// and Clip keep free text (failure reasons, notes) within what a row
// holds.
package rowjson
