package consume

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// fetchLoop pulls live messages while Run holds fewer than its limit and hands
// them to the workers. On stop it lets the pull in flight finish and still
// dispatches what arrives: the workers hand those back in queue order.
func (r *runner) fetchLoop(ctx context.Context) {
	lowWater := max(1, r.cfg.FetchBatch/8)
	failures := 0
	for {
		n, ok := acquire(ctx, r.slots, lowWater, r.cfg.FetchBatch)
		if !ok {
			return
		}
		batch, err := r.cons.Fetch(n, r.fetchOpts()...)
		if err != nil {
			release(r.slots, n)
			if !r.pullFailed(ctx, err, &failures) {
				return
			}
			continue
		}
		got := 0
		for m := range batch.Messages() {
			got++
			it, err := newItem(m, r.slots)
			if err != nil {
				// Cannot happen with a pull consumer; its token is given back below.
				r.log.Error("consume: not a JetStream message", "subject", m.Subject(), "error", err)
				got--
				continue
			}
			r.dispatch(it)
		}
		release(r.slots, n-got)
		if got > 0 {
			r.lastDelivery.Store(time.Now().UnixNano())
		}
		if err := batch.Error(); err != nil {
			if !r.pullFailed(ctx, err, &failures) {
				return
			}
			continue
		}
		failures = 0
	}
}

// fetchOpts are the options of a live pull. A pinned Run pulls in the
// priority group; nats.go carries the pin id the server hands out.
func (r *runner) fetchOpts() []jetstream.FetchOpt {
	opts := []jetstream.FetchOpt{jetstream.FetchMaxWait(fetchWait)}
	if r.cfg.Pinned {
		opts = append(opts, jetstream.FetchPriorityGroup(pinGroup))
	}
	return opts
}

func newItem(m jetstream.Msg, sem chan struct{}) (*item, error) {
	meta, err := m.Metadata()
	if err != nil {
		return nil, err
	}
	return &item{
		msg: Msg{
			Stream:    meta.Stream,
			Subject:   m.Subject(),
			Seq:       meta.Sequence.Stream,
			Time:      meta.Timestamp,
			Header:    m.Headers(),
			Data:      m.Data(),
			Delivered: meta.NumDelivered,
		},
		delivery:  m,
		delivered: meta.NumDelivered,
		sem:       sem,
	}, nil
}

// pullFailed decides what a pull error means: a closed connection or a deleted
// stream ends Run; anything else (server restarting, leader change, consumer
// deleted) is logged, waited out and retried. It reports whether to go on.
func (r *runner) pullFailed(ctx context.Context, err error, failures *int) bool {
	if errors.Is(err, nats.ErrConnectionClosed) {
		r.fail(fmt.Errorf("consume: %s: %w", r.cfg.Durable, err))
		return false
	}
	if errors.Is(err, jetstream.ErrPinIDMismatch) {
		// Another Run holds the pin (we were failed over, or never had
		// it): standing by is the normal state, not a failure.
		return ctx.Err() == nil
	}
	*failures++
	if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		cctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
		c, cerr := r.ensureConsumer(cctx)
		cancel()
		switch {
		case cerr == nil:
			r.log.Warn("consume: consumer was deleted; created it again")
			r.cons = c
		case errors.Is(cerr, jetstream.ErrStreamNotFound):
			r.fail(cerr)
			return false
		default:
			err = cerr
		}
	}
	// Log the first failure of a streak and then ever more rarely.
	if f := *failures; f&(f-1) == 0 {
		r.log.Warn("consume: pull failed; retrying", "error", err, "failures", f)
	}
	return r.sleep(min(100*time.Millisecond<<min(*failures-1, 5), 2*time.Second)) && ctx.Err() == nil
}

// redriveLoop pulls re-drive requests for this durable, loads the original
// message, and hands it to the subject's worker like a live message.
func (r *runner) redriveLoop(ctx context.Context) {
	failures := 0
	for {
		n, ok := acquire(ctx, r.rslots, 1, redriveBatch)
		if !ok {
			return
		}
		batch, err := r.redr.Fetch(n, jetstream.FetchMaxWait(fetchWait))
		if err != nil {
			release(r.rslots, n)
			if !r.redrivePullFailed(ctx, err, &failures) {
				return
			}
			continue
		}
		got := 0
		for m := range batch.Messages() {
			got++
			if !r.startRedrive(ctx, m) {
				release(r.rslots, 1)
			}
		}
		release(r.rslots, n-got)
		if err := batch.Error(); err != nil {
			if !r.redrivePullFailed(ctx, err, &failures) {
				return
			}
			continue
		}
		failures = 0
	}
}

func (r *runner) redrivePullFailed(ctx context.Context, err error, failures *int) bool {
	if errors.Is(err, nats.ErrConnectionClosed) {
		r.fail(fmt.Errorf("consume: %s: %w", redriveConsumer(r.cfg.Durable), err))
		return false
	}
	*failures++
	if f := *failures; f&(f-1) == 0 {
		r.log.Warn("consume: pull re-drive requests failed; retrying", "error", err, "failures", f)
	}
	return r.sleep(min(100*time.Millisecond<<min(*failures-1, 5), 2*time.Second)) && ctx.Err() == nil
}

// startRedrive resolves one request and dispatches it; it reports whether the
// request became an item (which then owns its token).
func (r *runner) startRedrive(ctx context.Context, req jetstream.Msg) bool {
	meta, err := req.Metadata()
	if err != nil {
		r.log.Error("consume: re-drive request is not a JetStream message", "error", err)
		return false
	}
	streamSeq, ok := parseSeqSubject(req.Subject(), redriveSubject(r.cfg.Durable, ""))
	if !ok {
		r.log.Error("consume: malformed re-drive request", "request", req.Subject())
		_ = req.Term()
		return false
	}
	if ctx.Err() != nil {
		r.giveBack(redriven, req)
		return false
	}
	retryLater := func(what string, err error) bool {
		r.log.Warn("consume: re-drive: "+what, "seq", streamSeq, "error", err)
		_ = req.NakWithDelay(time.Second)
		return false
	}
	entrySubj := entrySubject(r.cfg.Durable, fmt.Sprint(streamSeq))
	ioCtx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	entryMsg, err := r.dl.GetLastMsgForSubject(ioCtx, entrySubj)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// Already re-driven, or never dead-lettered: nothing to do.
		r.finishRequest(req, meta.Sequence.Stream)
		return false
	}
	if err != nil {
		return retryLater("load dead letter", err)
	}
	orig, err := r.src.GetMsg(ioCtx, streamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		// The stream no longer has it: say so in the dead letter.
		e := parseEntry(entryMsg)
		e.err = fmt.Sprintf("re-drive: message %d is no longer in stream %s", streamSeq, r.cfg.Stream)
		e.attempts, e.at = 0, time.Now()
		if err := r.publishEntry(ioCtx, e); err != nil {
			return retryLater("update dead letter", err)
		}
		r.log.Error("consume: dead-lettered", "subject", e.subject, "seq", streamSeq, "error", e.err, "attempts", 0, "redrive", true)
		r.finishRequest(req, meta.Sequence.Stream)
		return false
	}
	if err != nil {
		return retryLater("load message", err)
	}
	it := &item{
		msg: Msg{
			Stream:  r.cfg.Stream,
			Subject: orig.Subject,
			Seq:     orig.Sequence,
			Time:    orig.Time,
			Header:  stripDirectGetHeaders(orig.Header),
			Data:    orig.Data,
		},
		delivery:  req,
		delivered: meta.NumDelivered,
		redrive:   &redrive{entrySubject: entrySubj, requestSeq: meta.Sequence.Stream},
		sem:       r.rslots,
	}
	r.dispatch(it)
	return true
}

// stripDirectGetHeaders removes what a direct get adds to a message's own
// headers, so a re-driven message looks like a delivered one.
func stripDirectGetHeaders(h nats.Header) nats.Header {
	if h == nil {
		return nil
	}
	for _, k := range []string{jetstream.StreamHeader, jetstream.SequenceHeader, jetstream.TimeStampHeaer,
		jetstream.SubjectHeader, "Nats-Num-Pending", "Nats-Last-Sequence"} {
		delete(h, k)
	}
	if len(h) == 0 {
		return nil
	}
	return h
}

func maxDeliveriesAdvisory(stream, durable string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + stream + "." + durable
}

// advisoryLoop dead-letters messages the server gave up on: delivered
// MaxDeliver times without ever being acked, because each process handling
// them died or hung. Core NATS advisories are not stored, so this only works
// while a Run is up; the server sends the advisory when it would next
// deliver the message, which is to a running Run.
func (r *runner) advisoryLoop(ctx context.Context, msgs <-chan *nats.Msg) {
	for {
		select {
		case <-ctx.Done():
			return
		case m := <-msgs:
			var adv struct {
				StreamSeq  uint64 `json:"stream_seq"`
				Deliveries int    `json:"deliveries"`
			}
			if err := json.Unmarshal(m.Data, &adv); err != nil || adv.StreamSeq == 0 {
				r.log.Warn("consume: unreadable max-deliveries advisory", "error", err)
				continue
			}
			r.deadLetterAbandoned(adv.StreamSeq, adv.Deliveries)
		}
	}
}

func (r *runner) deadLetterAbandoned(seq uint64, deliveries int) {
	ctx, cancel := context.WithTimeout(r.ioctx, 2*ioTimeout)
	defer cancel()
	e := entry{
		stream:    r.cfg.Stream,
		streamSeq: seq,
		err: fmt.Sprintf("delivered %d time(s) (MaxDeliver) and never acked: the process handling it stopped or hung each time",
			deliveries),
		attempts: deliveries,
		at:       time.Now(),
	}
	if m, err := r.src.GetMsg(ctx, seq); err == nil {
		e.subject = m.Subject
	}
	if err := r.publishEntry(ctx, e); err != nil {
		r.log.Error("consume: store dead letter for abandoned message; it stays unacked in the stream",
			"seq", seq, "error", err)
		return
	}
	r.log.Error("consume: dead-lettered", "subject", e.subject, "seq", seq, "error", e.err, "attempts", deliveries)
}
