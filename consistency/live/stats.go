package live

// Stats is a snapshot of a Hub's load, for metrics and tests.
type Stats struct {
	// Clients is the number of connections currently served.
	Clients int
	// Subscriptions is the number of (client, entity) subscriptions.
	Subscriptions int
	// Entities is the number of distinct entities somebody follows.
	Entities int
	// Dropped counts, since NewHub, clients disconnected because their
	// queue was full (they did not read fast enough).
	Dropped int64
	// Rejected counts, since NewHub, connections refused because
	// MaxClients was reached.
	Rejected int64
}
