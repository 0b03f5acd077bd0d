package command

import (
	"fmt"
	"strings"
	"time"

	"github.com/converge-es/converge/events/feed"
)

// validNames says what a handler's consumer name may hold, for errors.
const validNames = "a handler name and ConsumerPrefix are UTF-8 text without control characters (U+0000 to U+001F, U+007F), '/' or '#', and the checkpoint names they make (with a partition and the command category) at most feed.MaxLeaseTextBytes (%d) bytes"

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

// validateConsumer refuses a consumer whose leases no store takes (the
// feed's rules, length included, judge each checkpoint name, which holds
// the consumer name): its subscriber would retry the refused lease for
// ever, and the handler would never run.
func validateConsumer(checkpoints []string) error {
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
	if strings.ContainsAny(prefix, "/#") {
		return fmt.Errorf("command: ProcessorConfig.ConsumerPrefix %.64q holds '/' or '#', which separate topics and partitions in checkpoint names; use '.' or '-' instead", prefix)
	}
	if err := feed.ValidateLease(prefix+".", "command", time.Minute); err != nil {
		return fmt.Errorf("command: ProcessorConfig.ConsumerPrefix %.64q cannot start a consumer name (%w): "+validNames, prefix, err, feed.MaxLeaseTextBytes)
	}
	return nil
}
