package orders

import (
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"
)

// progress reports how many orders have closed: a bar redrawn in place on
// a terminal, plain lines at every quarter otherwise.
type progress struct {
	w     io.Writer
	bar   bool
	total int
}

func newProgress(w io.Writer, bar bool, total int) *progress {
	return &progress{w: w, bar: bar, total: total}
}

// run reports done until the returned stop is called, which draws the
// final state.
func (p *progress) run(done *atomic.Int64) (stop func()) {
	quit, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		last := -1
		for {
			select {
			case <-quit:
				p.draw(int(done.Load()), &last)
				if p.bar {
					fmt.Fprintln(p.w)
				}
				return
			case <-t.C:
				p.draw(int(done.Load()), &last)
			}
		}
	}()
	return func() { close(quit); <-finished }
}

func (p *progress) draw(n int, last *int) {
	if p.bar {
		const width = 40
		filled := width * n / max(p.total, 1)
		fmt.Fprintf(p.w, "\r  [%s%s] %d/%d orders closed", strings.Repeat("#", filled), strings.Repeat(".", width-filled), n, p.total)
		return
	}
	q := 4 * n / max(p.total, 1)
	if q > *last && q > 0 {
		*last = q
		fmt.Fprintf(p.w, "  %d/%d orders closed\n", n, p.total)
	}
}
