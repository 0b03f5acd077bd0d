package feed

import (
	"errors"
	"fmt"
	"time"
	"unicode/utf8"
)

// ErrInvalidLease is wrapped by every error about a bad lease or
// membership argument: an empty or unprintable consumer name, owner, group
// or member, one longer than MaxLeaseTextBytes, or a ttl that is not
// positive. Both stores refuse these before touching storage.
var ErrInvalidLease = errors.New("feed: invalid lease argument")

// ValidateLease checks the arguments of CheckpointStore.Acquire and Renew.
func ValidateLease(name, owner string, ttl time.Duration) error {
	if err := ValidateLeaseHolder(Lease{Name: name, Owner: owner}); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: consumer %q: lease ttl is %s, it must be positive", ErrInvalidLease, name, ttl)
	}
	return nil
}

// ValidateLeaseHolder checks a lease's consumer name and owner as Acquire
// does, for the calls given a lease (Release, a unit's moves): both
// stores refuse what PostgreSQL's text could not hold alike.
func ValidateLeaseHolder(l Lease) error {
	if err := ValidateConsumerNames(l.Name); err != nil {
		return err
	}
	if err := validateLeaseText("owner", l.Owner, "use a per-process id, e.g. hostname and pid"); err != nil {
		return fmt.Errorf("consumer %q: %w", l.Name, err)
	}
	return nil
}

// ValidateConsumerNames checks consumer names as Acquire does, for the
// calls that take names alone (Position, DeleteCheckpoints, a unit's
// Positions).
func ValidateConsumerNames(names ...string) error {
	for _, name := range names {
		if err := validateLeaseText("consumer name", name, `name each consumer after what it does, e.g. "orders-projection"`); err != nil {
			return err
		}
	}
	return nil
}

// ValidateMember checks the arguments of CheckpointStore.Heartbeat.
func ValidateMember(group, member string, ttl time.Duration) error {
	if err := ValidateMemberNames(group, member); err != nil {
		return err
	}
	if ttl <= 0 {
		return fmt.Errorf("%w: group %q: heartbeat ttl is %s, it must be positive", ErrInvalidLease, group, ttl)
	}
	return nil
}

// ValidateMemberNames checks a group and a member as Heartbeat does, for
// Leave, which takes no ttl.
func ValidateMemberNames(group, member string) error {
	if err := validateLeaseText("group", group, "name it after the consumer group"); err != nil {
		return err
	}
	if err := validateLeaseText("member", member, "use a per-process id"); err != nil {
		return fmt.Errorf("group %q: %w", group, err)
	}
	return nil
}

// MaxLeaseTextBytes bounds a consumer name, an owner, a group and a
// member, in bytes. PostgreSQL indexes them (a group with a member in one
// key), and refuses an index entry past about 2,700 bytes: without a bound
// here, a name memory takes would fail on PostgreSQL only, and at every
// attempt to take its lease.
const MaxLeaseTextBytes = 1024

// validateLeaseText refuses what PostgreSQL's text cannot hold (NUL,
// invalid UTF-8) or index (see MaxLeaseTextBytes), and other control
// characters, which only come by mistake. Errors quote at most the start
// of s.
func validateLeaseText(what, s, hint string) error {
	if s == "" {
		return fmt.Errorf("%w: empty %s (%s)", ErrInvalidLease, what, hint)
	}
	if len(s) > MaxLeaseTextBytes {
		return fmt.Errorf("%w: %s %.64q… is %d bytes, the limit is %d (%s)", ErrInvalidLease, what, s, len(s), MaxLeaseTextBytes, hint)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s %.64q is not valid UTF-8", ErrInvalidLease, what, s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: %s %.64q contains control character %U", ErrInvalidLease, what, s, r)
		}
	}
	return nil
}

// ValidateMoves checks the moves of one Unit.Commit as both stores do:
// each lease as ValidateLeaseHolder does, each position and From as
// ValidateToken does, and no checkpoint moved twice (ErrInvalidLease).
// Two moves of one checkpoint had no one meaning: memory judged each
// From against the checkpoint before the commit, PostgreSQL the second
// against the first's result.
func ValidateMoves(moves []Move) error {
	for i, m := range moves {
		if err := ValidateLeaseHolder(m.Lease); err != nil {
			return err
		}
		if err := ValidateToken(m.Position); err != nil {
			return err
		}
		if m.From != nil {
			if err := ValidateToken(*m.From); err != nil {
				return err
			}
		}
		for _, o := range moves[:i] {
			if o.Lease.Name == m.Lease.Name {
				return fmt.Errorf("%w: checkpoint %q is moved twice in one commit: move each checkpoint once, to its last position", ErrInvalidLease, m.Lease.Name)
			}
		}
	}
	return nil
}
