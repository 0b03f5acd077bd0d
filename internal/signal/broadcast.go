package signal

import "sync"

// Broadcast wakes every goroutine waiting on it at once. The zero value is
// ready to use.
type Broadcast struct {
	mu sync.Mutex
	ch chan struct{}
}

// C returns a channel that is closed by the next Notify after this call.
// Take the channel before checking the condition you wait for, so a Notify
// between the check and the wait is not missed.
func (b *Broadcast) C() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
	}
	return b.ch
}

// Notify wakes everyone waiting on a channel taken before it.
func (b *Broadcast) Notify() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch != nil {
		close(b.ch)
		b.ch = nil
	}
}
