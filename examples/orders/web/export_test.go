package web

// SetListScan shrinks how many rows List reads per batch and per call, so
// tests reach the limits with a few orders. Call it before Start.
func (a *App) SetListScan(batch, maxRows int) { a.scanBatch, a.scanMax = batch, maxRows }
