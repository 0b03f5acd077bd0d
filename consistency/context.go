package consistency

import "context"

type statusKey struct{}

// ContextWithStatus returns ctx carrying st. Middleware uses it; handler
// tests can use it to fake a wait.
func ContextWithStatus(ctx context.Context, st Status) context.Context {
	return context.WithValue(ctx, statusKey{}, st)
}

// StatusFromContext returns the Status Middleware stored for the request,
// and false when the request did not pass through it.
func StatusFromContext(ctx context.Context) (Status, bool) {
	st, ok := ctx.Value(statusKey{}).(Status)
	return st, ok
}
