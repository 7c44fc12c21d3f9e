package consume

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// States of an item; only the one who moves it to stateSettled settles it.
const (
	stateHeld    int32 = iota // fetched, not started
	stateStarted              // a worker is on it
	stateSettled              // acked, terminated, parked or handed back
)

// item is one message Run holds, from fetch until it is settled, or one
// re-drive or skip request (req set).
type item struct {
	msg      Msg
	part     *partition
	delivery jetstream.Msg
	// delivered is the durable's delivery sequence of this delivery.
	delivered uint64
	state     atomic.Int32
	touched   atomic.Int64 // unix nanos of the pull that brought it, or of the last progress signal
	req       *request
}

// newItem is m, which a pull sent at pulled brought: its lease counts from
// then, not from when it is read off the batch, which may be long after
// (a reload of the parked keys, a frozen process).
func newItem(m jetstream.Msg, p *partition, key func(string) string, pulled time.Time) (*item, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	it := &item{
		msg: Msg{
			Stream:    meta.Stream,
			Subject:   m.Subject(),
			Key:       key(m.Subject()),
			Seq:       meta.Sequence.Stream,
			Time:      meta.Timestamp,
			Header:    m.Headers(),
			Data:      m.Data(),
			Delivered: meta.NumDelivered,
		},
		part:      p,
		delivery:  m,
		delivered: meta.Sequence.Consumer,
	}
	it.touched.Store(pulled.UnixNano())
	return it, nil
}

// queue is one worker's FIFO. It is unbounded so that a fetch never waits on
// a busy worker (the durables' MaxAckPending bounds it).
type queue struct {
	mu     sync.Mutex
	items  []*item
	ready  chan struct{}
	closed bool
}

func newQueue() *queue { return &queue{ready: make(chan struct{}, 1)} }

func (q *queue) push(it *item) {
	q.mu.Lock()
	q.items = append(q.items, it)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *queue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pop returns the next item, or nil once the queue is closed and empty.
func (q *queue) pop() *item {
	for {
		q.mu.Lock()
		if len(q.items) > 0 {
			it := q.items[0]
			q.items[0] = nil
			q.items = q.items[1:]
			q.mu.Unlock()
			return it
		}
		closed := q.closed
		q.mu.Unlock()
		if closed {
			return nil
		}
		<-q.ready
	}
}

// dispatch hands an item to its key's worker.
func (r *runner) dispatch(it *item) {
	h := fnv.New32a()
	h.Write([]byte(it.msg.Key))
	r.queues[h.Sum32()%uint32(len(r.queues))].push(it)
}

func (r *runner) work(q *queue) {
	for it := q.pop(); it != nil; it = q.pop() {
		r.process(it)
	}
}

// begin claims it for a worker; it fails when the partition is being handed
// back (the release settles it) or the item was settled already.
func (r *runner) begin(it *item) bool {
	p := it.part
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.releasing || !it.state.CompareAndSwap(stateHeld, stateStarted) {
		return false
	}
	if it.req == nil && r.leaseLost(it, time.Now()) {
		// Held past its lease: the server may have given it to another
		// member, and later messages of its key may already be handled.
		r.log.Warn("consume: a message waited past its lease before its handling began; handing the partition back",
			"partition", p.n, "key", it.msg.Key, "seq", it.msg.Seq)
		it.state.Store(stateHeld)
		p.loseLocked()
		return false
	}
	p.inflight++
	return true
}

// end finishes a claimed item: settled, or back to held for the release to
// hand back.
func (r *runner) end(it *item, settled bool) {
	p := it.part
	p.mu.Lock()
	if settled {
		it.state.Store(stateSettled)
		delete(p.held, it)
		if it.req == nil && p.seqs != nil {
			delete(p.seqs, it.msg.Seq)
		}
	} else {
		it.state.Store(stateHeld)
	}
	p.inflight--
	p.idle.Broadcast()
	p.mu.Unlock()
}

func (r *runner) process(it *item) {
	if !r.begin(it) {
		return
	}
	if it.req != nil {
		r.end(it, r.serve(it))
		return
	}
	if dead, ok := r.parked.get(it.msg.Key); ok {
		r.end(it, r.park(it, dead))
		return
	}
	h, done, err := r.handle(it, it.msg)
	switch {
	case !done:
	case err == nil:
		_ = it.delivery.Ack()
		if r.cfg.DropHandled {
			go r.drop(it.msg.Seq) // not holding the worker: a refused delete is answered only by a timeout
		}
	default:
		_, done = r.deadLetter(it, it.msg, err, false)
	}
	h.end(done)
	r.end(it, done)
}

// drop deletes a handled message (Config.DropHandled). A failure costs
// only storage until the message's TTL, so it is logged, not retried.
func (r *runner) drop(seq uint64) {
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	if err := r.src.DeleteMsg(ctx, seq); err != nil {
		r.log.Warn("consume: handled message not deleted (kept until its TTL)", "stream", r.cfg.Stream, "seq", seq, "error", err)
	}
}

// attempt runs the handler on m until it succeeds, fails permanently, or
// runs out of attempts; it reports false when the partition is being handed
// back first (the message is then not its fault, nor done). Each call
// holds h's share of the process's handlers (unfinished.go).
func (r *runner) attempt(ctx context.Context, it *item, m Msg, h *handling) (done bool, err error) {
	budget := r.cfg.Attempts
	var unanswered time.Time // the first attempt that went unanswered
	for n, away := 1, 0; ; n++ {
		reconnects := r.js.Conn().Stats().Reconnects
		if !h.lock(it.part.wctx, h.alone) {
			return false, ctx.Err()
		}
		if r.handingBack(it.part) {
			h.release()
			return false, nil
		}
		err = r.call(ctx, m)
		if !h.alone {
			h.release()
		}
		if err == nil {
			return true, nil
		}
		if ctx.Err() != nil || r.handingBack(it.part) {
			return false, err
		}
		wait := r.cfg.Backoff(n)
		switch {
		case r.serverAway(err, reconnects) || IsAway(err) || r.waitUnanswered(err, &unanswered):
			// The server restarting or out of reach is not the message's
			// fault: wait for it without using up the message's attempts,
			// so an outage dead-letters nothing (a redelivered message
			// handed back while the connection is down may keep its
			// recorded start, though: five such would reach MaxUnfinished).
			n--
			if away++; away == 1 || away%20 == 0 {
				r.log.Warn("consume: waiting for the server", "subject", m.Subject, "seq", m.Seq, "tries", away, "error", err)
			}
			wait = DefaultBackoff(away)
		case IsPermanent(err) || n >= budget:
			return true, triedError{err, n}
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return false, err
		}
	}
}

// triedError is a handler's error after its n attempts; it reads as the
// error.
type triedError struct {
	error
	n int
}

func (e triedError) Unwrap() error { return e.error }

// serverAway reports whether a failed attempt failed for the server, not
// for the message: JetStream could not take a request (a server starting,
// a stream between leaders after a node died: eventstore.Unavailable), a
// read the handler made did not yet show the message (a new stream leader
// still applying: eventstore.ErrBehind), or the connection dropped during
// the attempt (reconnects is the connection's count before it).
func (r *runner) serverAway(err error, reconnects uint64) bool {
	nc := r.js.Conn()
	return eventstore.Unavailable(err) || errors.Is(err, eventstore.ErrBehind) ||
		!nc.IsConnected() || nc.Stats().Reconnects != reconnects
}

// unansweredFor is how long a message's attempts that went unanswered
// (eventstore.Unanswered) are waited out before they count: a stream
// electing or catching up after a node died answers nothing for a while,
// but a handler that times out for a reason of its own must still end in
// a dead letter, not hold its worker for ever.
var unansweredFor atomic.Int64

func init() { unansweredFor.Store(int64(5 * time.Minute)) }

// waitUnanswered reports whether err is an unanswered request to wait out,
// since is when this message's first one failed (set here).
func (r *runner) waitUnanswered(err error, since *time.Time) bool {
	if !eventstore.Unanswered(err) {
		return false
	}
	if since.IsZero() {
		*since = time.Now()
	}
	return time.Since(*since) < time.Duration(unansweredFor.Load())
}

func (r *runner) handingBack(p *partition) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.releasing || !p.running
}

func (r *runner) call(ctx context.Context, m Msg) (err error) {
	defer func() {
		if p := recover(); p != nil {
			r.log.Error("consume: handler panicked", "subject", m.Subject, "seq", m.Seq,
				"panic", p, "stack", string(debug.Stack()))
			err = fmt.Errorf("handler panic: %v", p)
		}
	}()
	return r.h(ctx, m)
}

// persist runs op until it succeeds; it reports false if the partition is
// handed back first.
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
		if r.handingBack(it.part) || !sleepCtx(it.part.hctx, DefaultBackoff(attempt)) {
			return false
		}
	}
}
