package consistency

// TrackerStats are a Tracker's counters, for metrics and tests.
type TrackerStats struct {
	// Waiters is how many waits are blocking now (the number MaxWaiters
	// bounds).
	Waiters int
	// Rejected counts waits turned away because MaxWaiters were already
	// blocking, since the tracker was built.
	Rejected uint64
}
