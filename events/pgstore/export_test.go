package pgstore

// SetMaxLostRaces sets how often an append of s runs again after losing
// the race for its stream's next version.
func SetMaxLostRaces(s *Store, n int) { s.maxLostRaces = n }
