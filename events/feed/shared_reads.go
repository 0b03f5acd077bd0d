package feed

import (
	"context"
	"sync"

	"github.com/converge-es/converge/events"
)

// SharedReads returns a Source for the consumers of one partitioned
// consumer in this process (a feed.Subscriber per partition, each with
// Partition set and the same Types, Categories, partition count and key):
// src, except that their reads share one read of the feed per wake-up, as
// the package doc's "Filters and partitions" describes. limit is their
// SubscriberConfig.BatchSize. Processor uses it for its partitions; use it
// when you build partition subscribers yourself. Reads without a partition
// go to src unchanged.
func SharedReads(src Source, partitions, limit int) Source {
	return newSharedReads(src, partitions, limit)
}

// sharedReads is the Source of one partitioned processor's consumers in
// this process. Each partition reads the feed on its own, and every commit
// wakes all of them: with N partitions a busy store ran N reads per
// wake-up, nearly all finding nothing of their own, and those reads were
// most of what the database spent on a saga at the default 8 partitions.
// Here the partitions read the processor's filter without the partition
// (one statement) and each takes its share in Go (PartitionOf, the same
// hash the store computes), answering later partitions from the same read
// while it can stand for a fresh one.
//
// A read can stand for a fresh one for a consumer at position `after` when
// it started at or before `after` and no wake-up has fired since it took
// its wake channel: the consumer took its own channel before asking, so no
// event became readable between the two that the consumer would not be
// woken for. And it must say something beyond `after`: events of the
// partition, or a scan past it (ScannedTo). Otherwise (the partition is
// at the end of what the read saw) only a fresh read can tell whether
// anything is pending, and the partitions asking at once share that one.
//
// And a read answers a partition at a position once: a partition asking
// again from where it stood made no progress on that answer, and is
// asking because the answer told it to look again (events pending behind
// an open transaction, which no wake-up announces), because it polls
// (push is down, or its safety poll came round) or because it lost a
// wake-up. Only a fresh read can answer those.
type sharedReads struct {
	Source
	// max bounds the events of one read: a partition's limit times the
	// partition count keeps each partition's share of a read of a
	// backlog near its own limit.
	max int

	mu   sync.Mutex
	last *sharedRead
}

// maxSharedRead bounds sharedReads.max, so a processor with many
// partitions does not hold a huge page in memory.
const maxSharedRead = 5000

// sharedRead is one read of the unpartitioned filter, done or in flight.
type sharedRead struct {
	after events.Token
	// part is the partition of each of batch's events, hashed once for
	// every partition the read answers, under key and count.
	part  []int
	key   PartitionKey
	count int
	wake  <-chan struct{}
	// served is the position each partition was last answered at,
	// guarded by sharedReads.mu.
	served map[int]events.Token
	done   chan struct{}
	batch  Batch
	err    error
}

func newSharedReads(src Source, partitions, limit int) *sharedReads {
	if limit <= 0 {
		limit = DefaultBatchSize
	}
	return &sharedReads{Source: src, max: min(limit*partitions, max(limit, maxSharedRead))}
}

// ReadFeed implements Source for a partition's consumer.
func (s *sharedReads) ReadFeed(ctx context.Context, after events.Token, f Filter, limit int) (Batch, error) {
	if !f.Partition.Enabled() {
		return s.Source.ReadFeed(ctx, after, f, limit)
	}
	if limit <= 0 {
		limit = events.DefaultReadLimit // as the stores read it
	}
	if r := s.current(after, f.Partition.Index); r != nil {
		select {
		case <-r.done:
		case <-ctx.Done():
			return Batch{}, ctx.Err()
		}
		if b, ok := r.answer(after, f, limit); ok {
			return b, nil
		}
	}
	// A read of its own, which partitions asking from the same position
	// meanwhile share.
	r := &sharedRead{
		after: after, key: f.Partition.Key, count: f.Partition.Count, wake: s.Wake(),
		served: map[int]events.Token{f.Partition.Index: after}, done: make(chan struct{}),
	}
	s.mu.Lock()
	s.last = r
	s.mu.Unlock()
	whole := f
	whole.Partition = Partition{}
	r.batch, r.err = s.Source.ReadFeed(ctx, after, whole, s.max)
	if r.err == nil {
		r.part = make([]int, len(r.batch.Events))
		for i, env := range r.batch.Events {
			r.part[i] = PartitionOf(KeyOf(r.key, env), r.count)
		}
	}
	close(r.done)
	if r.err != nil {
		return Batch{}, r.err
	}
	b, _ := r.answer(after, f, limit)
	return b, nil
}

// current returns the last read when it may stand for a fresh one for
// partition at after: it started there or before, nothing woke readers
// since, and it has not answered the partition there already.
func (s *sharedReads) current(after events.Token, partition int) *sharedRead {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.last
	if r == nil || r.after.After(after) {
		return nil
	}
	if at, ok := r.served[partition]; ok && at == after {
		return nil
	}
	select {
	case <-r.wake:
		return nil
	default:
	}
	r.served[partition] = after
	return r
}

// answer is partition f.Partition's share of r after `after`, up to
// limit, and whether r can stand for a read of its own (see sharedReads).
func (r *sharedRead) answer(after events.Token, f Filter, limit int) (Batch, bool) {
	if r.err != nil || f.Partition.Key != r.key || f.Partition.Count != r.count {
		return Batch{}, false
	}
	// Sized once: grown by appends, a partition's share was copied and
	// allocated about twice over.
	n := 0
	for i, env := range r.batch.Events {
		if env.Token.After(after) && r.part[i] == f.Partition.Index {
			n++
		}
	}
	out := Batch{Events: make([]events.Envelope, 0, min(n, limit))}
	for i, env := range r.batch.Events {
		if !env.Token.After(after) || r.part[i] != f.Partition.Index {
			continue
		}
		if len(out.Events) == limit {
			// The partition's share runs past its limit: it looked no
			// further than its last event.
			out.ScannedTo = out.Events[limit-1].Token
			return out, true
		}
		out.Events = append(out.Events, env)
	}
	switch {
	case r.after == after && len(r.batch.Events) == 0:
		// The same read exactly: its answer, pending included.
		out.ScannedTo, out.Pending = r.batch.ScannedTo, r.batch.Pending
		return out, true
	case r.batch.ScannedTo.After(after):
		out.ScannedTo = r.batch.ScannedTo
		// The read found events, so the store did not work out what is
		// pending. A partition it had nothing for moves to ScannedTo and
		// reads again at once (the consumer does so after an advance);
		// Pending only makes an empty answer's reader look again soon.
		out.Pending = len(out.Events) == 0
		return out, true
	}
	return out, false
}
