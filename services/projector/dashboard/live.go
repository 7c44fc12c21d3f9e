package dashboard

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
)

// Live tells open pages that the read model changed. The projector calls
// Changed after each committed batch; Run pushes at most one notice per
// interval to every subscriber, so a busy stream costs a page a refresh
// now and then, not one per event. With Share, the replicas tell each
// other too: each commits the batches of its own partitions, and a page
// is connected to one of them.
type Live struct {
	interval time.Duration
	kick     chan struct{}
	origin   string // tells this replica's relayed notices from the others'

	mu      sync.Mutex
	seq     uint64 // the highest stream sequence committed so far
	gen     uint64 // bumped on every change, so a notice with an unchanged seq still goes out
	local   bool   // a change committed here that the other replicas have not heard of
	subs    map[chan Notice]struct{}
	publish func(relayed) // set by Share
}

// relayed is a notice on its way between replicas.
type relayed struct {
	Origin string `json:"origin"`
	Seq    uint64 `json:"seq"`
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
	return &Live{interval: interval, kick: make(chan struct{}, 1), subs: map[chan Notice]struct{}{}, origin: rand.Text()}
}

// Share relays this replica's changes to the other replicas over core
// NATS on subject, coalesced as the pages' notices are, and passes theirs
// to this replica's pages. Call it before Run. A lost relay costs a page
// that change until the next one: the read model is in PostgreSQL, the
// notice only says when to look.
func (l *Live) Share(nc *nats.Conn, subject string) error {
	_, err := nc.Subscribe(subject, func(m *nats.Msg) {
		var r relayed
		if json.Unmarshal(m.Data, &r) != nil || r.Origin == l.origin {
			return
		}
		l.changed(r.Seq, false)
	})
	if err != nil {
		return fmt.Errorf("share live notices on %s: %w", subject, err)
	}
	l.mu.Lock()
	l.publish = func(r relayed) {
		b, _ := json.Marshal(r)
		_ = nc.Publish(subject, b) // best effort, see above
	}
	l.mu.Unlock()
	return nil
}

// Changed records that data up to stream sequence seq is committed here.
// It never blocks.
func (l *Live) Changed(seq uint64) { l.changed(seq, true) }

// Refresh tells this replica's pages that something every replica sees
// for itself changed, outside the read model (the scoring model); it is
// not relayed. It never blocks.
func (l *Live) Refresh() { l.changed(0, false) }

func (l *Live) changed(seq uint64, local bool) {
	l.mu.Lock()
	l.seq = max(l.seq, seq)
	l.gen++
	l.local = l.local || local
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
		var relay func()
		if l.local && l.publish != nil {
			pub, r := l.publish, relayed{Origin: l.origin, Seq: l.seq}
			relay = func() { pub(r) }
		}
		l.local = false
		l.mu.Unlock()
		if relay != nil {
			relay()
		}
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
