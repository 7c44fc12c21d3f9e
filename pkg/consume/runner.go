package consume

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// runner is one Run: a member of its group, owning some partitions.
type runner struct {
	cfg     Config
	js      jetstream.JetStream
	h       Handler
	log     *slog.Logger
	id      string
	src     jetstream.Stream
	dl      jetstream.Stream
	members jetstream.KeyValue
	redr    jetstream.Consumer
	parts   []*partition
	queues  []*queue
	parked  parkedKeys

	runCtx context.Context
	ioctx  context.Context // carries ctx values, never cancelled: I/O has its own timeouts
	loops  sync.WaitGroup  // partition loops

	fatalMu sync.Mutex
	fatal   error
	abort   context.CancelCauseFunc
}

// partition is one durable of the group, as this Run sees it.
type partition struct {
	n    int
	cons jetstream.Consumer

	mu        sync.Mutex
	idle      *sync.Cond // signalled when inflight drops
	running   bool       // a loop owns it (fetching or releasing)
	cancel    context.CancelFunc
	releasing bool
	held      map[*item]struct{}
	seqs      map[uint64]bool // stream sequences of the live messages held
	inflight  int
	fresh     bool // no delivery yet since it was taken
	// recovered: the messages the durable delivers again since it was
	// taken (a dead owner's) are dispatched; requests wait for it, or a
	// dead message whose owner died before settling it would run as a
	// live one once a request unparked its key. taken is when it was
	// taken: a dead owner's pin lapses PinnedTTL after that at the latest,
	// and pulls come back empty while it holds.
	recovered bool
	taken     time.Time
	hctx      context.Context
	hcancel   context.CancelFunc
	// wctx ends as soon as p is being handed back: a handler still waiting
	// for its turn (unfinished.go) gives up then, not after the grace.
	wctx    context.Context
	wcancel context.CancelFunc
	// pinned is when a pull last took or kept the server's pin for this
	// member (zero: not known to hold it), so a release unpins only its own.
	pinned time.Time
	// waitUntil is when what a hand-back the server may not have got
	// (its naks lost) has surely expired: taken again before that, its
	// pulls would get newer messages of the keys it held first.
	waitUntil time.Time
	// delivered is the durable's delivery sequence of the last message
	// this member got since it took p (0: none yet), reconnects the
	// connection's count when it took p, then when the pull of its last
	// delivery was sent. A delivery it never got (lost with a dropped
	// connection, or sent to a pull it had given up on) shows as a step
	// over one: missed then holds p's release back as a lost hand-back
	// does, so the server gives the missed message back, after its
	// AckWait, before any newer one of its key. A release after a
	// reconnect that no later delivery has stepped over, nor a pull 1.5
	// AckWait after it has found empty, or while the connection is down,
	// does the same: what was in flight may have gone with it.
	delivered  uint64
	reconnects uint64
	missed     bool
	// quiet is the first empty pull sent since the reconnect reconnects
	// has not caught up with.
	quiet pullStart
}

func newRunner(cfg Config, js jetstream.JetStream, h Handler, log *slog.Logger, src, dl jetstream.Stream, members jetstream.KeyValue) *runner {
	r := &runner{cfg: cfg, js: js, h: h, log: log, id: newMemberID(), src: src, dl: dl, members: members}
	r.parts = make([]*partition, cfg.Partitions)
	for p := range r.parts {
		part := &partition{n: p}
		part.idle = sync.NewCond(&part.mu)
		r.parts[p] = part
	}
	r.queues = make([]*queue, cfg.Workers)
	for i := range r.queues {
		r.queues[i] = newQueue()
	}
	r.parked.keys = map[string]uint64{}
	return r
}

func (r *runner) fail(err error) {
	r.fatalMu.Lock()
	if r.fatal == nil {
		r.fatal = err
	}
	r.fatalMu.Unlock()
	r.abort(err)
}

func (r *runner) run(ctx context.Context) error {
	runCtx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	r.runCtx, r.abort, r.ioctx = runCtx, abort, context.WithoutCancel(ctx)
	r.log = r.log.With("member", r.id)

	var workers sync.WaitGroup
	for _, q := range r.queues {
		workers.Go(func() { r.work(q) })
	}
	var helpers sync.WaitGroup
	helpers.Go(func() { r.redriveLoop(runCtx) })
	helpers.Go(func() { r.progressLoop(runCtx) })
	r.manage(runCtx)
	// Stopping: let the others take over at once, then hand every
	// partition back in order.
	r.leave()
	for _, p := range r.parts {
		p.stop()
	}
	r.loops.Wait()
	helpers.Wait()
	for _, q := range r.queues {
		q.close()
	}
	workers.Wait()
	r.fatalMu.Lock()
	defer r.fatalMu.Unlock()
	return r.fatal
}

// manage renews this member every heartbeat and takes or lets go of
// partitions as the membership says, until ctx ends.
func (r *runner) manage(ctx context.Context) {
	// Members started together see each other before anyone takes a
	// partition it would hand over a second later.
	if _, err := r.renew(ctx); err == nil {
		sleepCtx(ctx, heartbeat/4)
	}
	t := time.NewTicker(heartbeat)
	defer t.Stop()
	failures := 0
	members := []string{r.id}
	for {
		live, err := r.renew(ctx)
		switch {
		case err != nil && ctx.Err() == nil:
			// Go on with the last membership known: while we pull, the pin
			// is ours, and a member that took a partition gets nothing.
			if failures++; failures&(failures-1) == 0 {
				r.log.Warn("consume: membership", "error", err, "failures", failures)
			}
		case err == nil:
			failures, members = 0, live
		}
		if ctx.Err() == nil {
			for _, p := range r.parts {
				if owner(members, p.n) == r.id {
					r.take(p)
				} else {
					p.stop()
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// missedBefore records a delivery to p (p.mu held) and reports whether
// one before it never reached this member: its delivery sequence steps
// over one, or, the first since p was taken, the connection dropped
// since (what was in flight went with it).
func (r *runner) missedBefore(p *partition, delivered uint64, pull pullStart) bool {
	missed := p.delivered != 0 && delivered != p.delivered+1 ||
		p.delivered == 0 && r.js.Conn().Stats().Reconnects != p.reconnects
	p.delivered = max(p.delivered, delivered)
	p.reconnects = max(p.reconnects, pull.reconnects)
	if missed {
		p.missed = true
	}
	return missed
}

// beforeRelease, set by tests, runs as a partition's release begins.
var beforeRelease atomic.Pointer[func(int)]

// dropDelivery, set by tests, drops the deliveries it is true of before
// the member sees them, as a connection that drops with them in flight
// does.
var dropDelivery atomic.Pointer[func(Msg) bool]

// take starts partition p's loop unless one runs.
func (r *runner) take(p *partition) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running || time.Now().Before(p.waitUntil) {
		return // manage tries again each heartbeat
	}
	ctx, cancel := context.WithCancel(r.runCtx)
	p.running, p.cancel, p.releasing, p.fresh, p.recovered, p.taken = true, cancel, false, true, false, time.Now()
	p.held, p.seqs = map[*item]struct{}{}, map[uint64]bool{}
	p.delivered, p.reconnects, p.missed, p.quiet = 0, r.js.Conn().Stats().Reconnects, false, pullStart{}
	p.hctx, p.hcancel = context.WithCancel(r.ioctx)
	p.wctx, p.wcancel = context.WithCancel(p.hctx)
	r.loops.Go(func() {
		if err := r.loadParked(); err != nil {
			r.log.Warn("consume: read parked keys", "partition", p.n, "error", err)
		}
		r.fetchLoop(ctx, p)
		r.release(p)
	})
}

// stop ends p's fetching; its loop then releases it.
func (p *partition) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running && p.cancel != nil {
		p.cancel()
	}
}

// lose stops p because what it holds can no longer be trusted: no held
// message starts from now on, and the release hands them all back.
func (p *partition) lose() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.loseLocked()
}

func (p *partition) loseLocked() {
	if p.running && p.cancel != nil {
		p.releasing = true
		p.cancel()
		p.wcancel()
	}
}

// fetchLoop pulls p's messages and hands them to the workers. It keeps a pull
// open even when p holds MaxHeld messages (the server then sends nothing), so
// a slow owner keeps its pin.
//
// A partition just taken first gets what its previous owner held and did not
// ack: the server redelivers those before any new message, but in batches
// as they expire or are handed back, not in one order. fetchLoop holds that
// prefix back (they are the deliveries with a count above one) and hands it
// to the workers sorted by sequence once it ends: at the first new message,
// or when a pull comes back empty (nothing more to redeliver, or MaxHeld
// reached; a short one was taken for that, and a second batch a moment
// later then ran out of order).
func (r *runner) fetchLoop(ctx context.Context, p *partition) {
	failures := 0
	recovering := true
	var prefix []*item
	lastGot := time.Now()
	flush := func() {
		slices.SortFunc(prefix, func(a, b *item) int { return cmpSeq(a.msg.Seq, b.msg.Seq) })
		for _, it := range prefix {
			r.dispatch(it)
		}
		prefix, recovering = nil, false
	}
	for ctx.Err() == nil {
		pull := r.startPull()
		batch, err := p.cons.Fetch(fetchBatch, jetstream.FetchMaxWait(fetchWait), jetstream.FetchPriorityGroup(pinGroup))
		if err != nil {
			r.notePull(p, pull, 0, err)
			if !r.pullFailed(ctx, p, err, &failures) {
				return
			}
			continue
		}
		got := 0
		for m := range batch.Messages() {
			if got++; got == 1 {
				r.onDelivery(p)
			}
			it, err := newItem(m, p, r.cfg.Key, pull.at)
			if err != nil {
				r.log.Error("consume: not a JetStream message", "subject", m.Subject(), "error", err)
				continue
			}
			if dropDelivery.Load() != nil && (*dropDelivery.Load())(it.msg) {
				continue // a test's lost delivery
			}
			p.mu.Lock()
			again := p.seqs[it.msg.Seq]
			p.held[it], p.seqs[it.msg.Seq] = struct{}{}, true
			losing := p.releasing
			missed := r.missedBefore(p, it.delivered, pull)
			p.mu.Unlock()
			if missed {
				if !losing {
					r.log.Warn("consume: a delivery never arrived; handing the partition back until it expires", "partition", p.n, "seq", it.msg.Seq)
				}
				p.lose()
				continue
			}
			if again {
				// The server gave us again a message we hold: it let our
				// copy expire, so what we hold may be out of step with it.
				// Start the partition over; the release hands both back.
				// One hand-back is one warning, however many come back.
				if !losing {
					r.log.Warn("consume: a held message was redelivered; handing the partition back", "partition", p.n, "seq", it.msg.Seq)
				}
				p.lose()
				continue
			}
			if recovering {
				if it.msg.Delivered > 1 {
					prefix = append(prefix, it)
					continue
				}
				flush()
			}
			r.dispatch(it)
		}
		// Only an empty pull says nothing more comes back (or MaxHeld is
		// reached): the server may give the redeliveries back in short
		// batches a moment apart, the later ones of lower sequences.
		if recovering && len(prefix) > 0 && got == 0 {
			flush()
		}
		p.mu.Lock()
		// Empty pulls for PinnedTTL after the take: a dead owner's pin has
		// lapsed, one heartbeat more for an owner that pulled on until it
		// learned it lost the partition.
		if !recovering || (got == 0 && pull.at.Sub(p.taken) >= r.cfg.PinnedTTL+heartbeat) {
			p.recovered = true
		}
		p.mu.Unlock()
		r.notePull(p, pull, got, batch.Error())
		if got > 0 {
			lastGot = time.Now()
		} else if time.Since(lastGot) >= r.cfg.PinnedTTL*3 {
			r.reportStall(p, time.Since(lastGot))
			lastGot = time.Now()
		}
		if err := batch.Error(); err != nil {
			if !r.pullFailed(ctx, p, err, &failures) {
				return
			}
			continue
		}
		failures = 0
	}
}

// pullStart is when a pull was sent, and the connection's reconnects then.
type pullStart struct {
	at         time.Time
	reconnects uint64
}

func (r *runner) startPull() pullStart {
	return pullStart{at: time.Now(), reconnects: r.js.Conn().Stats().Reconnects}
}

// notePull keeps p.pinned. A delivery shows the pin was ours when the pull
// was sent or later; a pull refused for its pin id shows it is not. An
// empty pull sent with our pin id renews the pin on the server, which is how
// an idle owner keeps it: counted only if the pin cannot have lapsed before
// the pull arrived and the connection held.
func (r *runner) notePull(p *partition, pull pullStart, got int, err error) {
	nc := r.js.Conn()
	held := nc.IsConnected() && nc.Stats().Reconnects == pull.reconnects
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case errors.Is(err, jetstream.ErrPinIDMismatch):
		p.pinned = time.Time{}
	case got > 0:
		p.pinned = pull.at
	case err == nil && held && !p.pinned.IsZero() && pull.at.Sub(p.pinned) < r.cfg.PinnedTTL/2:
		p.pinned = pull.at
	}
	// A reconnect no delivery has stepped over stops counting as a loss
	// once a pull sent 1.5 AckWait after it comes back empty: a delivery
	// lost with the connection would have expired and come back on it.
	if got == 0 && err == nil && held && pull.reconnects != p.reconnects && len(p.held) < r.cfg.MaxHeld {
		if p.quiet.reconnects != pull.reconnects {
			p.quiet = pull
		} else if pull.at.Sub(p.quiet.at) >= r.cfg.AckWait+r.cfg.AckWait/2 {
			p.reconnects = pull.reconnects
		}
	}
}

// reportStall warns when p's pulls have come back empty for a while
// although its durable has messages to deliver and p could take them:
// another client holds the pin, or messages nobody handles fill the
// durable's MaxAckPending. Nothing else would show such a stall.
func (r *runner) reportStall(p *partition, empty time.Duration) {
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	info, err := p.cons.Info(ctx)
	if err != nil {
		return
	}
	p.mu.Lock()
	held := len(p.held)
	p.mu.Unlock()
	if info.NumPending == 0 || held >= r.cfg.MaxHeld {
		return
	}
	pinned := ""
	for _, g := range info.PriorityGroups {
		if g.Group == pinGroup {
			pinned = g.PinnedClientID
		}
	}
	r.log.Warn("consume: pulls come back empty while messages wait", "partition", p.n, "for", empty.Round(time.Second),
		"pending", info.NumPending, "ack_pending", info.NumAckPending, "held", held, "waiting_pulls", info.NumWaiting, "pinned", pinned)
}

// onDelivery runs before the first message of a pull is dispatched. The
// first delivery after taking p means the previous owner let go of it, so
// the keys it parked are read now, not when p was taken.
func (r *runner) onDelivery(p *partition) {
	p.mu.Lock()
	fresh := p.fresh
	p.fresh = false
	p.mu.Unlock()
	if !fresh {
		return
	}
	for attempt := 1; ; attempt++ {
		err := r.loadParked()
		if err == nil || r.runCtx.Err() != nil {
			return
		}
		r.log.Warn("consume: read parked keys", "partition", p.n, "error", err)
		time.Sleep(DefaultBackoff(attempt))
	}
}

// pullFailed decides what a pull error means: a closed connection ends Run;
// anything else (another owner still pinned, server restarting, consumer
// deleted) is waited out and retried. It reports whether to go on.
func (r *runner) pullFailed(ctx context.Context, p *partition, err error, failures *int) bool {
	if errors.Is(err, nats.ErrConnectionClosed) {
		r.fail(fmt.Errorf("consume: %s: %w", r.cfg.Group, err))
		return false
	}
	if errors.Is(err, jetstream.ErrPinIDMismatch) {
		// Another member is pinned: the previous owner has not let go yet.
		// nats.go forgets the stale pin id, and the next pull waits its turn.
		return ctx.Err() == nil
	}
	*failures++
	if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		cctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
		c, cerr := r.ensureConsumer(cctx, p.n)
		cancel()
		switch {
		case cerr == nil:
			r.log.Warn("consume: consumer was deleted; created it again", "partition", p.n)
			p.cons = c
		case errors.Is(cerr, jetstream.ErrStreamNotFound):
			r.fail(cerr)
			return false
		default:
			err = cerr
		}
	}
	if f := *failures; f&(f-1) == 0 {
		r.log.Warn("consume: pull failed; retrying", "partition", p.n, "error", err, "failures", f)
	}
	return sleepCtx(ctx, min(100*time.Millisecond<<min(*failures-1, 5), 2*time.Second))
}

// release hands p back: no new handler starts, running ones finish (their
// context is cancelled after handBackGrace), every message still held is
// naked in stream order, and the pin is given up. A plain nak puts the
// message straight on the consumer's redelivery queue, which the server
// serves before any new message, so the next owner's first deliveries are
// these (fetchLoop sorts them); a nak with a delay would wait for the
// server's timer, and a new message could overtake it.
func (r *runner) release(p *partition) {
	if f := beforeRelease.Load(); f != nil {
		(*f)(p.n)
	}
	p.mu.Lock()
	p.releasing = true
	p.wcancel()
	grace := time.AfterFunc(r.handBackGrace(), p.hcancel)
	for p.inflight > 0 {
		p.idle.Wait()
	}
	grace.Stop()
	p.hcancel()
	var back []*item
	for it := range p.held {
		if it.state.CompareAndSwap(stateHeld, stateSettled) {
			back = append(back, it)
		}
	}
	p.held, p.seqs = nil, nil
	pinned, missed, reconnects := p.pinned, p.missed, p.reconnects
	p.mu.Unlock()

	slices.SortFunc(back, func(a, b *item) int { return cmpSeq(a.msg.Seq, b.msg.Seq) })
	// A missed delivery is one the server holds as ours until it expires:
	// what a hand-back whose naks are lost leaves. So may a delivery that
	// was in flight when the connection dropped, before its reconnect or
	// after (read after the hand-back, which may span one).
	handed := r.handBack(back) && !missed
	nc := r.js.Conn()
	handed = handed && nc.IsConnected() && nc.Stats().Reconnects == reconnects
	// Unpinning drops whoever holds the pin: only ours may go (a member
	// that froze past PinnedTTL finds another pinned and must not unpin it
	// before what it held has expired). Nor may it go while the server may
	// not have our naks (the connection dropped, or the last went
	// unanswered): the next owner would pull new messages before them.
	// Left to lapse, the pin outlasts AckWait, so they come back first;
	// and this member waits as long before it takes p again (waitUntil).
	mine := handed && !pinned.IsZero() && time.Since(pinned) < r.cfg.PinnedTTL/2
	if mine {
		r.unpin(p)
	}
	p.mu.Lock()
	p.running, p.cancel = false, nil
	if mine {
		p.pinned = time.Time{}
	}
	if !handed {
		// Their last progress signal was at most a quarter AckWait ago.
		p.waitUntil = time.Now().Add(r.cfg.AckWait + r.cfg.AckWait/2)
	}
	p.mu.Unlock()
}

// handBackGrace is how long a release lets running handlers finish:
// ShutdownGrace, cut to end before the pin lapses (the releasing member
// pulls no more), with AckWait to spare for the hand-back itself.
func (r *runner) handBackGrace() time.Duration {
	return min(r.cfg.ShutdownGrace, r.cfg.PinnedTTL-r.cfg.AckWait-fetchWait)
}

func cmpSeq(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// handBack naks items in order and waits until the server has processed
// them (acks and naks are fire-and-forget; a request on the last one's reply
// subject is answered once the server got to it). It reports whether the
// server did: false when a nak may be lost.
func (r *runner) handBack(items []*item) bool {
	if len(items) == 0 {
		return true
	}
	if lostHandBack.Load() {
		return false // the naks went with a dropped connection
	}
	nc := r.js.Conn()
	reconnects := nc.Stats().Reconnects
	for _, it := range items[:len(items)-1] {
		_ = it.delivery.Nak()
	}
	last := items[len(items)-1].delivery
	if !nc.IsConnected() {
		_ = last.Nak()
		return false
	}
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	if _, err := nc.RequestWithContext(ctx, last.Reply(), []byte("-NAK")); err != nil {
		r.log.Warn("consume: hand back; some messages come back after AckWait", "error", err)
		return false
	}
	// Answered on a new connection, the first naks may have gone with
	// the old one.
	return nc.Stats().Reconnects == reconnects
}

// lostHandBack, set by tests, drops every hand-back's naks, as a
// connection that drops with them unsent does.
var lostHandBack atomic.Bool

// unpin lets the next owner in at once instead of after PinnedTTL.
func (r *runner) unpin(p *partition) {
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	durable := Durable(r.cfg.Group, p.n, r.cfg.Partitions)
	if err := r.src.UnpinConsumer(ctx, durable, pinGroup); err != nil {
		r.log.Debug("consume: unpin", "durable", durable, "error", err)
	}
}

// progressLoop tells the server, every quarter AckWait, that held messages
// waiting longer than that are being worked on (most are handled before
// they need it), and drops a partition whose held messages are older than
// the lease: the process was frozen or cut off, so the server may have
// given them to someone else already.
func (r *runner) progressLoop(ctx context.Context) {
	every := max(r.cfg.AckWait/4, 10*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	reconnects := r.js.Conn().Stats().Reconnects
	var buf []*item
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		cut := r.js.Conn().Stats().Reconnects != reconnects
		reconnects = r.js.Conn().Stats().Reconnects
		for _, p := range r.parts {
			p.mu.Lock()
			buf = buf[:0]
			for it := range p.held {
				buf = append(buf, it)
			}
			releasing := p.releasing
			p.mu.Unlock()
			lost := cut && len(buf) > 0
			for _, it := range buf {
				switch it.state.Load() {
				case stateSettled:
					continue
				case stateHeld:
					if releasing {
						// Never to start here: left to expire, it is back
						// on the server before the pin lapses, should a
						// handler outlast the grace and keep the nak back.
						continue
					}
				}
				if r.leaseLost(it, now) {
					lost = true
					break
				}
				if now.UnixNano()-it.touched.Load() < int64(every) {
					continue
				}
				if err := it.delivery.InProgress(); err == nil {
					it.touched.Store(now.UnixNano())
				}
			}
			if lost {
				r.log.Warn("consume: held messages outlived their lease; handing the partition back", "partition", p.n)
				p.lose()
			}
		}
		clear(buf)
	}
}

// leaseLost reports whether the server may have redelivered it elsewhere.
func (r *runner) leaseLost(it *item, now time.Time) bool {
	return now.UnixNano()-it.touched.Load() > int64(r.cfg.AckWait*3/4)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
