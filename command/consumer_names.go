package command

import (
	"fmt"
	"time"

	"github.com/converge-es/converge/events/feed"
	"github.com/converge-es/converge/internal/rowjson"
)

// MaxConsumerNameLength is the longest feed consumer name of a handler,
// "<ConsumerPrefix>.<handler name>", in bytes. Its checkpoint names add a
// partition suffix and the command category; PostgreSQL indexes them,
// and refuses a name of a few KiB, so a longer one could never take its
// lease.
const MaxConsumerNameLength = 500

// validNames says what a handler's consumer name may hold, for errors.
const validNames = "a handler name and ConsumerPrefix are UTF-8 text without control characters (U+0000 to U+001F, U+007F), together at most %d bytes"

// checkpointNames returns the checkpoint names the consumer name reads
// the commands of typ under: one per partition.
func (c *ProcessorConfig) checkpointNames(name, typ string) []string {
	n := c.Partitions
	if n <= 1 {
		return []string{feed.CheckpointName(name, Category(typ))}
	}
	cps := make([]string, n)
	for i := range cps {
		cps[i] = feed.CheckpointName(feed.PartitionName(name, i, n), Category(typ))
	}
	return cps
}

// validateConsumer refuses a consumer name whose leases no store takes:
// its subscriber would retry the refused lease for ever, and the handler
// would never run.
func validateConsumer(name string, checkpoints []string) error {
	if len(name) > MaxConsumerNameLength {
		return fmt.Errorf("consumer name %q is %d bytes, the limit is %d", rowjson.Clip(name, 64), len(name), MaxConsumerNameLength)
	}
	for _, cp := range checkpoints {
		// The owner and ttl are the subscriber's; any valid ones judge the
		// name alone.
		if err := feed.ValidateLease(cp, "command", time.Minute); err != nil {
			return err
		}
	}
	return nil
}

// validatePrefix refuses a ConsumerPrefix that would make every handler's
// consumer name invalid.
func validatePrefix(prefix string) error {
	if n := len(prefix) + len(".x"); n > MaxConsumerNameLength {
		return fmt.Errorf("command: ProcessorConfig.ConsumerPrefix is %d bytes, which leaves no room for a handler name in a consumer name of at most %d (use a shorter prefix)",
			len(prefix), MaxConsumerNameLength)
	}
	if err := feed.ValidateLease(prefix+".", "command", time.Minute); err != nil {
		return fmt.Errorf("command: ProcessorConfig.ConsumerPrefix %q cannot start a consumer name (%w): "+validNames, prefix, err, MaxConsumerNameLength)
	}
	return nil
}
