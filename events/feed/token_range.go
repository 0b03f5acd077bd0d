package feed

import (
	"fmt"
	"math"

	"github.com/converge-es/converge/events"
)

// ValidateToken refuses a token no store can hold: each of its two parts
// fits PostgreSQL's bigint, which the memory store keeps to as well, so a
// token beyond that was forged or corrupted. Both stores call it wherever
// a token comes in (a read's start, a checkpoint, a row's token), and
// refuse the same tokens with events.ErrInvalidToken.
func ValidateToken(t events.Token) error {
	if t.Major() > math.MaxInt64 || t.Minor() > math.MaxInt64 {
		return fmt.Errorf("%w: token %s is out of range for this store", events.ErrInvalidToken, t)
	}
	return nil
}
