package feed

import "fmt"

// Encoding says how a Publisher stores message payloads. Event payloads are
// JSON in every store (a jsonb column on PostgreSQL), while a Watermill
// payload is any bytes.
type Encoding string

const (
	// EncodingJSON stores the payload as the event's JSON payload. Publish
	// fails for a payload that is not valid JSON, naming EncodingBase64 as
	// the fix. The stored JSON is queryable and readable by any projection,
	// but PostgreSQL's jsonb keeps the JSON value, not the bytes: whitespace,
	// key order and duplicate keys are normalised on the way back.
	EncodingJSON Encoding = "json"
	// EncodingBase64 stores any bytes, wrapped as a base64 JSON string, and
	// marks the event with Extra[MetaEncoding] = "base64". A Subscriber
	// unwraps marked payloads, so handlers receive the exact bytes that were
	// published. Readers of the store itself (ReadAll, projections that
	// decode envelopes) see the JSON string.
	EncodingBase64 Encoding = "base64"
)

func (e Encoding) validate() error {
	switch e {
	case EncodingJSON, EncodingBase64:
		return nil
	}
	return fmt.Errorf("feed: PublisherConfig.Encoding is %q: use feed.EncodingJSON or feed.EncodingBase64", string(e))
}
