package projections

// SetDropHook makes r report every batch of rows a drop deletes.
func SetDropHook(r *Runner, fn func(projection string, gen, rows int)) { r.dropHook = fn }
