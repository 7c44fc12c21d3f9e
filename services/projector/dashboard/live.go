package dashboard

import (
	"context"
	"sync"
	"time"
)

// Live tells open pages that the read model changed. The projector calls
// Changed after each committed batch; Run pushes at most one notice per
// interval to every subscriber, so a busy stream costs a page a refresh
// now and then, not one per event.
type Live struct {
	interval time.Duration
	kick     chan struct{}

	mu   sync.Mutex
	seq  uint64 // the highest stream sequence committed so far
	gen  uint64 // bumped on every change, so a notice with an unchanged seq still goes out
	subs map[chan Notice]struct{}
}

// Notice is one push: the highest stream sequence the read model holds,
// as far as this process has committed it.
type Notice struct {
	Seq uint64 `json:"seq"`
	Gen uint64 `json:"gen"`
}

// NewLive returns a Live that pushes at most once per interval (250ms
// when 0).
func NewLive(interval time.Duration) *Live {
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	return &Live{interval: interval, kick: make(chan struct{}, 1), subs: map[chan Notice]struct{}{}}
}

// Changed records that data up to stream sequence seq is committed (0:
// something changed outside the read model, such as the scoring model).
// It never blocks.
func (l *Live) Changed(seq uint64) {
	l.mu.Lock()
	l.seq = max(l.seq, seq)
	l.gen++
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// Run pushes notices until ctx ends. Call it once.
func (l *Live) Run(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
		}
		l.mu.Lock()
		n := Notice{Seq: l.seq, Gen: l.gen}
		for ch := range l.subs {
			// Each subscriber holds the latest notice only.
			select {
			case <-ch:
			default:
			}
			ch <- n
		}
		l.mu.Unlock()
		t.Reset(l.interval)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// subscribe returns a channel of notices and the current one; cancel
// stops it.
func (l *Live) subscribe() (ch chan Notice, now Notice, cancel func()) {
	ch = make(chan Notice, 1)
	l.mu.Lock()
	l.subs[ch] = struct{}{}
	now = Notice{Seq: l.seq, Gen: l.gen}
	l.mu.Unlock()
	return ch, now, func() {
		l.mu.Lock()
		delete(l.subs, ch)
		l.mu.Unlock()
	}
}
