package consume

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// item is one message Run holds, from fetch until it is settled (acked,
// terminated or handed back).
type item struct {
	msg Msg
	// delivery is what gets settled: the live message, or the re-drive request.
	delivery jetstream.Msg
	// delivered is the delivery's server delivery count.
	delivered uint64
	// redrive is set when the item re-drives a dead letter.
	redrive *redrive
	// sem gets the item's token back when it is settled.
	sem chan struct{}

	touched atomic.Int64 // unix nanos of delivery or the last progress signal
	started atomic.Int64 // unix nanos the first handler call began, 0 before
	slowLog atomic.Bool  // a slow handler was logged once
}

type redrive struct {
	entrySubject string
	requestSeq   uint64 // the request's sequence in the dead-letter stream
}

// tracker knows every item Run holds, so their AckWait can be kept from
// running out while they wait in a queue or in a handler.
type tracker struct {
	mu    sync.Mutex
	items map[*item]struct{}
}

func (t *tracker) add(it *item) {
	it.touched.Store(time.Now().UnixNano())
	t.mu.Lock()
	t.items[it] = struct{}{}
	t.mu.Unlock()
}

func (t *tracker) remove(it *item) {
	t.mu.Lock()
	delete(t.items, it)
	t.mu.Unlock()
}

func (t *tracker) snapshot(buf []*item) []*item {
	t.mu.Lock()
	defer t.mu.Unlock()
	for it := range t.items {
		buf = append(buf, it)
	}
	return buf
}

// progressLoop tells the server, every quarter AckWait, that the messages Run
// holds are being worked on. Without it a message queued behind a slow or
// retrying one on the same worker would be redelivered after AckWait and then
// handled twice, the second time after later messages of its subject.
func (r *runner) progressLoop(done <-chan struct{}) {
	every := max(r.cfg.AckWait/4, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	var buf []*item
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			buf = r.tracked.snapshot(buf[:0])
			for _, it := range buf {
				if now.UnixNano()-it.touched.Load() >= int64(every) {
					r.progress(it)
				}
				if s := it.started.Load(); s != 0 && now.UnixNano()-s > int64(r.cfg.AckWait) && it.slowLog.CompareAndSwap(false, true) {
					r.log.Warn("consume: handler still running after AckWait",
						"subject", it.msg.Subject, "seq", it.msg.Seq, "running", time.Duration(now.UnixNano()-s).Round(time.Millisecond))
				}
			}
			clear(buf)
		}
	}
}

func (r *runner) progress(it *item) {
	// An error means the connection is down; the server then redelivers after
	// AckWait, which handlers tolerate.
	_ = it.delivery.InProgress()
	it.touched.Store(time.Now().UnixNano())
}

// dispatch hands a held item to its subject's worker.
func (r *runner) dispatch(it *item) {
	r.tracked.add(it)
	// Queues have room for every token, so this does not block.
	r.queues[partition(it.msg.Subject, len(r.queues))] <- it
}

func (r *runner) work(q <-chan *item) {
	for it := range q {
		r.process(it)
		r.tracked.remove(it)
		if it.sem != nil {
			release(it.sem, 1)
		}
	}
}

// process handles one item to the end: acked, dead-lettered, or handed back
// because Run is stopping. It keeps the worker until then, so the subject's
// next message waits.
func (r *runner) process(it *item) {
	if r.stopping() {
		r.handBack(it)
		return
	}
	budget := r.cfg.Attempts
	if r.cfg.MaxDeliver > 0 && it.delivered >= uint64(r.cfg.MaxDeliver) {
		// The server will not deliver it again: after this failure it is now
		// or never for the dead letter.
		budget = 1
	}
	it.started.Store(time.Now().UnixNano())
	for attempt := 1; ; attempt++ {
		err := r.call(it)
		if err == nil {
			r.succeeded(it)
			return
		}
		if r.hctx.Err() != nil {
			// Cut off by shutdown: not the message's fault.
			r.handBack(it)
			return
		}
		if IsPermanent(err) || attempt >= budget {
			r.deadLetter(it, err, attempt)
			return
		}
		r.progress(it)
		if !r.sleep(r.cfg.Backoff(attempt)) {
			r.handBack(it)
			return
		}
	}
}

func (r *runner) call(it *item) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("consume: handler panicked", "subject", it.msg.Subject, "seq", it.msg.Seq,
				"panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return r.h(r.hctx, it.msg)
}

// handBack gives a delivery back to the server so that it is delivered again
// at once (to this durable's next Run or another replica) instead of after
// AckWait. It is only called while Run stops, and the naks go out after the
// last pull has ended: a nak while a pull is open would send the message
// straight back to this Run, round and round until MaxDeliver.
func (r *runner) handBack(it *item) {
	if it.redrive != nil {
		r.giveBack(redriven, it.delivery)
	} else {
		r.giveBack(live, it.delivery)
	}
}

// Which consumer a delivery came from.
const (
	live     = 0
	redriven = 1
)

func (r *runner) giveBack(consumer int, m jetstream.Msg) {
	r.settleMu.Lock()
	r.back[consumer] = append(r.back[consumer], m)
	r.settleMu.Unlock()
}

// settled remembers the last delivery acked or terminated on a consumer; its
// reply subject serves as the barrier in flushSettles.
func (r *runner) settled(consumer int, m jetstream.Msg) {
	r.settleMu.Lock()
	r.lastSettled[consumer] = m.Reply()
	r.settleMu.Unlock()
}

// nakBody is what jetstream.Msg.NakWithDelay sends.
func nakBody(delay time.Duration) []byte {
	return fmt.Appendf(nil, "-NAK {\"delay\": %d}", delay.Nanoseconds())
}

// flushSettles sends the naks handBack collected, then makes sure the server
// has processed every ack, term and nak of this Run before it returns: they
// are fire-and-forget, and a server that stops with some still queued would
// redeliver those messages only after AckWait. Run calls it once no pull is
// open and no worker is left.
//
// A nak with a delay, unlike a plain one, is stored with the consumer (as an
// expired delivery time), so it survives a server restart; and the server
// redelivers expired messages sorted by stream sequence, before any new
// message, which keeps each subject in order.
//
// The barrier is one request per consumer on an ack subject: the server
// handles a consumer's acks in order and answers a request once it got to it.
// It is the last nak when there is one, else a progress signal for a message
// already acked or terminated, which changes nothing.
func (r *runner) flushSettles() {
	r.settleMu.Lock()
	defer r.settleMu.Unlock()
	nc := r.js.Conn()
	if !nc.IsConnected() {
		// Closed: nothing can be sent. Reconnecting: the naks wait in the
		// client's reconnect buffer, and a barrier would only add a timeout.
		for _, back := range r.back {
			for _, m := range back {
				_ = m.NakWithDelay(time.Millisecond)
			}
		}
		return
	}
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	for consumer, back := range r.back {
		barrier, body := r.lastSettled[consumer], []byte("+WPI")
		for i, m := range back {
			if i == len(back)-1 {
				barrier, body = m.Reply(), nakBody(time.Millisecond)
				break
			}
			if err := m.NakWithDelay(time.Millisecond); err != nil {
				r.log.Debug("consume: hand back", "subject", m.Subject(), "error", err)
			}
		}
		if barrier == "" {
			continue
		}
		if _, err := nc.RequestWithContext(ctx, barrier, body); err != nil {
			r.log.Warn("consume: confirm acks; some messages may come back after AckWait", "error", err)
		}
	}
}

func (r *runner) succeeded(it *item) {
	if it.redrive == nil {
		if err := it.delivery.Ack(); err != nil {
			r.log.Warn("consume: ack", "subject", it.msg.Subject, "seq", it.msg.Seq, "error", err)
		}
		r.settled(live, it.delivery)
		return
	}
	// Re-driven: the dead letter goes, then the request is acked.
	ok := r.persist(it, "delete dead letter", func(ctx context.Context) error {
		return r.dl.Purge(ctx, jetstream.WithPurgeSubject(it.redrive.entrySubject))
	})
	if !ok {
		r.handBack(it)
		return
	}
	r.log.Info("consume: re-driven message handled", "subject", it.msg.Subject, "seq", it.msg.Seq)
	r.finishRequest(it.delivery, it.redrive.requestSeq)
}

// deadLetter stores the dead letter and only then terminates the message, so
// a crash in between means a redelivery, never a lost message.
func (r *runner) deadLetter(it *item, cause error, attempts int) {
	e := entry{
		stream:    r.cfg.Stream,
		subject:   it.msg.Subject,
		streamSeq: it.msg.Seq,
		err:       cause.Error(),
		attempts:  attempts,
		at:        time.Now(),
	}
	ok := r.persist(it, "store dead letter", func(ctx context.Context) error {
		return r.publishEntry(ctx, e)
	})
	if !ok {
		r.handBack(it)
		return
	}
	r.log.Error("consume: dead-lettered", "subject", e.subject, "seq", e.streamSeq,
		"error", e.err, "attempts", attempts, "redrive", it.redrive != nil)
	if it.redrive != nil {
		r.finishRequest(it.delivery, it.redrive.requestSeq)
		return
	}
	if err := it.delivery.TermWithReason(termReason(e.err)); err != nil {
		r.log.Warn("consume: terminate", "subject", e.subject, "seq", e.streamSeq, "error", err)
	}
	r.settled(live, it.delivery)
}

// persist runs op until it succeeds, signalling progress between tries; it
// reports false if Run started stopping first.
func (r *runner) persist(it *item, what string, op func(ctx context.Context) error) bool {
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
		err := op(ctx)
		cancel()
		if err == nil {
			return true
		}
		if attempt == 1 || attempt%10 == 0 {
			r.log.Warn("consume: "+what, "subject", it.msg.Subject, "seq", it.msg.Seq, "try", attempt, "error", err)
		}
		r.progress(it)
		if !r.sleep(DefaultBackoff(attempt)) {
			return false
		}
	}
}

// finishRequest acks a handled re-drive request and deletes it, so the
// dead-letter stream keeps only requests still to do.
func (r *runner) finishRequest(req jetstream.Msg, seq uint64) {
	if err := req.Ack(); err != nil {
		r.log.Warn("consume: ack re-drive request", "error", err)
		return
	}
	r.settled(redriven, req)
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	if err := r.dl.DeleteMsg(ctx, seq); err != nil {
		r.log.Debug("consume: delete re-drive request", "seq", seq, "error", err)
	}
}
