// Package rawquery reads one query parameter's values as url.ParseQuery
// decodes them, without dropping the pairs ParseQuery cannot decode.
//
// url.ParseQuery drops, without a word, a pair with a bad %-escape or a
// ';' (and r.URL.Query() ignores the error it returns). A parameter whose
// pair is dropped so reads as not sent at all. Values reports such a pair
// naming the parameter as an *Error instead; pairs naming other
// parameters are left alone, as ParseQuery leaves them.
package rawquery
