package consistency

import "net/http"

// HTTPConfig tells Middleware which read models a request reads.
type HTTPConfig struct {
	// Projections returns the read models (projection names) request r
	// reads, typically by route. Return nil for routes that read none: they
	// pass through unlabelled. The names must come from the program, never
	// from the request. Defaults to nil, which uses Names for every request.
	Projections func(r *http.Request) []string

	// Names are the read models every request reads, when Projections is
	// nil. Defaults to none; one of Projections and Names is required.
	Names []string
}
