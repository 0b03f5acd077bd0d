package feed

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/converge-es/converge/events"
)

// TopicAll is the topic of the whole global feed; the empty topic means the
// same. Any other topic is a category (see Source.ReadFeed).
const TopicAll = "$all"

// Subscriber is a Watermill message.Subscriber over a Source: it delivers
// stored events as messages, one at a time in global order, and moves a
// durable checkpoint as they are Acked.
//
// Each Subscribe call runs one consumer under CheckpointName(ConsumerName,
// topic). Processes running the same consumer elect one deliverer through a
// lease; the others stand by and take over when it closes or stops renewing.
// For every event the consumer begins a Unit and delivers a message whose
// context carries it, then waits: an Ack commits the handler's writes and the
// new checkpoint together, a Nack rolls the writes back and delivers the same
// event again after a backoff, as a new message with the same UUID. Delivery
// is at least once: an event is delivered again after a crash between the
// handler's Ack and the commit, when the lease was lost meanwhile (then
// the commit fails and nothing the handler wrote through the unit
// survives), or when the subscription ended (its context, or Close)
// before the handler answered (see Close).
//
// No unit (on PostgreSQL, no transaction) is open while the consumer waits
// for events: only while a message is in a handler's hands.
type Subscriber struct {
	src Source
	cfg SubscriberConfig
	// instance makes this Subscriber's lease owners its own, whatever
	// cfg.Owner is (see SubscriberConfig.Owner).
	instance string

	ctx    context.Context // canceled by Close
	cancel context.CancelFunc

	mu     sync.Mutex
	closed bool
	seq    int
	wg     sync.WaitGroup
	states []*consumerState // one per Subscribe call, in call order
}

var _ message.Subscriber = (*Subscriber)(nil)

// NewSubscriber returns a Subscriber reading src. cfg.ConsumerName is
// required.
func NewSubscriber(src Source, cfg *SubscriberConfig) (*Subscriber, error) {
	if src == nil {
		return nil, errors.New("feed: NewSubscriber needs a Source (a memstore.Store or a pgstore.Store)")
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Subscriber{src: src, cfg: c, instance: newInstanceID(), ctx: ctx, cancel: cancel}, nil
}

// CheckpointName is the name under which a consumer's checkpoint and lease
// are stored for a topic: consumerName itself for the whole feed (TopicAll
// or ""), and consumerName + "/" + topic for a category. One Subscriber can
// so follow several categories, each with its own position. Wait on this
// name in the consistency layer.
func CheckpointName(consumerName, topic string) string {
	if topic == "" || topic == TopicAll {
		return consumerName
	}
	return consumerName + "/" + topic
}

// Subscribe starts a consumer of topic and returns its messages: the whole
// global feed for TopicAll or "", else the events of the category named by
// topic (streams named topic or starting with topic + "-"). The channel is
// closed when ctx is done, when the Subscriber is closed, or when the Source
// is closed; a message still in a handler's hands when ctx is done is
// given up at once, as by Close, and delivered again by the next holder
// of the lease. Messages carry ctx's values. A topic no stream id can be in,
// one holding an ASCII control character (NUL included) or not valid
// UTF-8, is refused at once with an error wrapping events.ErrInvalidEvent.
//
// Subscribing twice to one topic runs two consumers under one name: one
// delivers, the other stands by.
func (s *Subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	category := topic
	if topic == TopicAll {
		category = ""
	}
	// Refused here, once, rather than by every read of the consumer, which
	// would leave it degraded for good.
	if strings.ContainsFunc(category, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, fmt.Errorf("feed: subscribe to topic %q: %w: it contains a control character (topics are stream categories)", topic, events.ErrInvalidEvent)
	}
	if category != "" {
		// A category is the start of a stream id: what no stream id may
		// hold (C1 controls, U+2028, more than the limit) no category
		// does, and the consumer would wait for ever on a topic that can
		// never have an event.
		if err := events.ValidateStreamID(category); err != nil {
			return nil, fmt.Errorf("feed: subscribe to topic %q: no stream's category can be it: %w", topic, err)
		}
	}
	if err := filterOf(category).Validate(); err != nil {
		return nil, fmt.Errorf("feed: subscribe to topic %q: %w", topic, err)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, fmt.Errorf("feed: subscribe to %q: %w: the Subscriber was closed (create a new one)", topic, events.ErrClosed)
	}
	s.seq++
	c := &consumer{
		src:    s.src,
		cps:    s.src.Checkpoints(),
		cfg:    &s.cfg,
		name:   CheckpointName(s.cfg.ConsumerName, topic),
		owner:  s.cfg.Owner + "/" + s.instance + "/" + strconv.Itoa(s.seq),
		filter: s.filter(category),
		out:    make(chan *message.Message),
	}
	c.log = s.cfg.Logger.With("consumer", c.name, "owner", c.owner)
	c.st = newConsumerState(&s.cfg, c.name, c.owner)
	s.states = append(s.states, c.st)

	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(s.ctx, cancel)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer cancel()
		defer stop()
		c.run(cctx)
	}()
	return c.out, nil
}

// filter is what the subscription reads: the topic's category, and the
// subscriber's partition of it.
func (s *Subscriber) filter(category string) Filter {
	f := filterOf(category)
	if s.cfg.Partition.Count > 1 {
		f.Partition = s.cfg.Partition
	}
	return f
}

// filterOf is the filter of a topic's category ("" for the whole feed).
func filterOf(category string) Filter {
	if category == "" {
		return Filter{}
	}
	return Filter{Categories: []string{category}}
}

// Status reports every consumer started by Subscribe, in call order:
// whether it holds its lease or stands by, whether the Source is failing
// (degraded since when, with what error), and counts of lease events. It
// asks nothing of the Source, so it answers while the database is down.
// Consumers that ended stay listed as LeaseStopped.
func (s *Subscriber) Status() []ConsumerStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ConsumerStatus, len(s.states))
	for i, st := range s.states {
		out[i] = st.get()
	}
	return out
}

// Close stops every consumer, releases the leases so standbys take over
// at once and closes the output channels, and returns once all of that is
// done. It does not wait for handlers, so a handler may call it. A
// message Acked before Close commits (even one whose Ack the consumer had
// not seen yet). A message still in a handler's hands is given up, with
// its unit (and so, with CommitBatch above 1, the events Acked before it
// in that unit): the unit never commits, so an Ack after Close is ignored
// and the event is delivered again, from the last checkpoint, by whoever
// holds the lease next. The unit is rolled back when the handler answers,
// not at once, since the handler may be using its transaction; if it has
// not answered LeaseTTL after Close, the unit is aborted under it (see
// Aborter: on PostgreSQL its statement is cancelled and its connection
// closed). Until then, on PostgreSQL, what it wrote holds back the next
// holder's writes to the same rows and streams. Closing again waits the
// same way and returns nil.
func (s *Subscriber) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}
