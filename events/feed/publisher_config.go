package feed

import "cmp"

// DefaultPublishType is the event type of published messages that carry no
// MetaType metadata.
const DefaultPublishType = "watermill.message"

// PublisherConfig configures a Publisher. The zero value (or a nil
// *PublisherConfig) is ready to use.
type PublisherConfig struct {
	// DefaultType is the stored event type of messages without MetaType
	// metadata. Defaults to DefaultPublishType ("watermill.message").
	DefaultType string
	// Encoding says how payloads are stored: EncodingJSON requires JSON
	// payloads and stores them as they are; EncodingBase64 stores any bytes
	// as a base64 JSON string that Subscribers unwrap. Defaults to
	// EncodingJSON.
	Encoding Encoding
}

func (c *PublisherConfig) withDefaults() PublisherConfig {
	out := PublisherConfig{}
	if c != nil {
		out = *c
	}
	out.DefaultType = cmp.Or(out.DefaultType, DefaultPublishType)
	out.Encoding = cmp.Or(out.Encoding, EncodingJSON)
	return out
}

func (c *PublisherConfig) validate() error {
	return c.Encoding.validate()
}
