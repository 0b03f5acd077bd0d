package command

import (
	"context"
	"errors"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/converge-es/converge/events/feed"
)

// partitioned is one handler's subscriber split into partitions by
// stream: a feed.Subscriber per partition, each under its own consumer
// name and lease, their messages merged into the one channel the router
// reads. The router handles each message in a goroutine of its own, so
// commands for different aggregates run concurrently while each
// aggregate's commands stay in order.
type partitioned struct {
	subs    []*feed.Subscriber
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

func newPartitioned(src feed.Source, cfg feed.SubscriberConfig, n int) (*partitioned, error) {
	p := &partitioned{closing: make(chan struct{})}
	name := cfg.ConsumerName
	// The partitions read the feed once per wake-up between them.
	src = feed.SharedReads(src, n, cfg.BatchSize)
	for i := range n {
		sc := cfg
		sc.ConsumerName = feed.PartitionName(name, i, n)
		sc.Partition = feed.Partition{Index: i, Count: n, Key: feed.ByStream}
		s, err := feed.NewSubscriber(src, &sc)
		if err != nil {
			return nil, errors.Join(err, p.Close())
		}
		p.subs = append(p.subs, s)
	}
	return p, nil
}

func (p *partitioned) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	out := make(chan *message.Message)
	var wg sync.WaitGroup
	for _, s := range p.subs {
		ch, err := s.Subscribe(ctx, topic)
		if err != nil {
			return nil, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for msg := range ch {
				select {
				case out <- msg:
				case <-p.closing:
					return
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		wg.Wait()
		close(out)
	}()
	return out, nil
}

func (p *partitioned) Close() error {
	p.once.Do(func() { close(p.closing) })
	var errs []error
	for _, s := range p.subs {
		errs = append(errs, s.Close())
	}
	p.wg.Wait()
	return errors.Join(errs...)
}
