package consume

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// A message that takes its process down is found by counting handlings,
// not deliveries: hand-backs and hand-overs deliver a message many times
// without starting it, and the server's MaxDeliver would dead-letter it for
// them. Before a redelivered message is handled, its key's record in the
// dead-letter stream, deadletter.started.<group>.<key>, is set to one more
// unfinished start; the record is deleted when the handling ends, or put
// back when a hand-back interrupts it. First deliveries are not recorded
// (most messages), so a crash costs one uncounted handling. A message
// whose last handling did not end is suspect, and runs alone in its
// process, every group's handlers waiting: a crash a handler causes then
// counts against it, not against the messages that happened to run beside
// it (a process dying of something else counts against what runs).

const startedPrefix = deadLetterPrefix + "started."

func startedSubject(group, key string) string { return startedPrefix + group + "." + key }

const hdrStarts = "Lf-Dl-Starts"

// starts is a message's record of unfinished handlings: how many, and the
// record's sequence in the dead-letter stream (0: none).
type starts struct {
	count    int
	last     uint64
	recorded bool // this handling's start is in the record
}

// handlers is every handler call of the process, across groups: a call
// holds one unit, a suspect all of them, from recording its start until
// its message is settled (its ack sent and its record deleted before the
// next suspect runs). Waiters are served in order, so a suspect is not
// starved; one gives up when its partition is being handed back.
var handlers = semaphore.NewWeighted(allHandlers)

const allHandlers = 1 << 30

// handling is one message's way through handle: its record, and its hold
// on handlers.
type handling struct {
	r     *runner
	m     Msg
	st    starts
	alone bool  // a suspect: holds every unit until end
	held  int64 // units held now
}

func (h *handling) lock(ctx context.Context, alone bool) bool {
	if h.held > 0 {
		return true
	}
	n := int64(1)
	if alone {
		n = allHandlers
	}
	if handlers.Acquire(ctx, n) != nil {
		return false
	}
	h.held = n
	return true
}

func (h *handling) release() {
	if h.held > 0 {
		handlers.Release(h.held)
		h.held = 0
	}
}

// end settles the record once the message is settled (done) or handed
// back, and lets the next handler in.
func (h *handling) end(done bool) {
	h.r.endStarts(h.m, h.st, done)
	h.release()
}

// handle runs the handler on m, which it brought, as attempt does. When
// it is a redelivery, m's unfinished handlings are counted (its start
// recorded first, holding its share of handlers, so a handling that waits
// its turn is not counted), and at MaxUnfinished m fails without being
// handled. The caller settles m, then calls end.
func (r *runner) handle(it *item, m Msg) (h handling, done bool, err error) {
	h = handling{r: r, m: m}
	if it.msg.Delivered <= 1 || r.cfg.MaxUnfinished <= 0 {
		done, err = r.attempt(it.part.hctx, it, m, &h)
		return h, done, err
	}
	var ok bool
	if h.st, ok = r.readStarts(it, m); !ok {
		return h, false, nil
	}
	if h.st.count >= r.cfg.MaxUnfinished {
		// Failed here, in its key's order, rather than risk one more
		// crash; once the record is known current (a replica behind may
		// still show one a re-drive deleted).
		if h.st, ok = r.confirmStarts(it, m, h.st); !ok {
			return h, false, nil
		}
		if h.st.count >= r.cfg.MaxUnfinished {
			return h, true, unfinishedError(h.st.count)
		}
	}
	if !r.recordStart(it, &h) {
		return h, false, nil
	}
	if prior := h.st.count - 1; prior >= r.cfg.MaxUnfinished {
		// Others' starts, seen once the record was read again; no handler
		// runs, so nobody waits for its dead-lettering.
		h.release()
		return h, true, unfinishedError(prior)
	}
	done, err = r.attempt(it.part.hctx, it, m, &h)
	return h, done, err
}

// readStarts reads m's record; a record of another message of the key
// (one whose ack came before its record was deleted) counts as none. It
// reports false if the partition was handed back first.
func (r *runner) readStarts(it *item, m Msg) (starts, bool) {
	var st starts
	ok := r.persist(it, "read unfinished handlings", func(ctx context.Context) error {
		var err error
		st, err = r.startsOf(ctx, m)
		return err
	})
	return st, ok
}

func (r *runner) startsOf(ctx context.Context, msg Msg) (starts, error) {
	var st starts
	m, err := r.dl.GetLastMsgForSubject(ctx, startedSubject(r.cfg.Group, msg.Key))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return st, nil
	case err != nil:
		return st, err
	}
	st.last = m.Sequence
	if seq, _ := strconv.ParseUint(m.Header.Get(hdrStreamSeq), 10, 64); seq == msg.Seq {
		st.count, _ = strconv.Atoi(m.Header.Get(hdrStarts))
	}
	return st, nil
}

// recordStart stores one more unfinished start of h's message, holding
// its share of handlers (all of them for a suspect: one whose record
// shows a start already, also one found so on a re-read). The write
// expects the record read, so two members never count one start; on a
// conflict (a replica behind answered the read, or a record left by an
// earlier handling) it is read again. Between failed tries the share is
// given back. It reports false if the partition was handed back first.
func (r *runner) recordStart(it *item, h *handling) bool {
	for try := 1; ; try++ {
		alone := h.st.count > 0
		if !h.lock(it.part.wctx, alone) {
			return false
		}
		if r.handingBack(it.part) {
			h.release()
			return false
		}
		var err error
		if !h.st.recorded { // else stored on an earlier try, which then found the message suspect
			ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
			err = r.writeStarts(ctx, h.m, &h.st, 1)
			cancel()
			h.st.recorded = err == nil
		}
		if err == nil && (alone || h.st.count <= 1) {
			h.alone = alone
			return true
		}
		h.release() // a suspect after all: wait for every share; or a failed write
		if err == nil {
			continue
		}
		if try == 1 || try%10 == 0 {
			r.log.Warn("consume: record a handling", "subject", h.m.Subject, "seq", h.m.Seq, "try", try, "error", err)
		}
		if r.handingBack(it.part) || !sleepCtx(it.part.hctx, DefaultBackoff(try)) {
			return false
		}
	}
}

// confirmStarts writes st's count again, expecting st's record: stored, it
// was current; refused, the record is read again (from the answer of a
// replica that may have moved on). It reports false if the partition was
// handed back first.
func (r *runner) confirmStarts(it *item, msg Msg, st starts) (starts, bool) {
	ok := r.persist(it, "confirm unfinished handlings", func(ctx context.Context) error {
		return r.writeStarts(ctx, msg, &st, 0)
	})
	return st, ok
}

// writeStarts stores st's count plus add as msg's record, expecting st's
// record (the subject's last sequence), so that no two writers count
// from the same state; refused, it reads the record again and retries.
// Confirming a count (add 0) of none writes nothing.
func (r *runner) writeStarts(ctx context.Context, msg Msg, st *starts, add int) error {
	for range 5 {
		if add == 0 && st.count == 0 {
			return nil
		}
		ack, err := r.js.PublishMsg(ctx, r.startsMsg(msg, st.count+add), jetstream.WithExpectStream(r.cfg.DeadLetter),
			jetstream.WithExpectLastSequencePerSubject(st.last))
		if err == nil {
			st.count, st.last = st.count+add, ack.Sequence
			return nil
		}
		if !eventstore.IsWrongLastSequence(err) {
			return err
		}
		if *st, err = r.startsOf(ctx, msg); err != nil {
			return err
		}
	}
	return errors.New("consume: the record of unfinished handlings kept changing")
}

func (r *runner) startsMsg(msg Msg, count int) *nats.Msg {
	m := nats.NewMsg(startedSubject(r.cfg.Group, msg.Key))
	m.Header.Set(hdrStreamSeq, strconv.FormatUint(msg.Seq, 10))
	m.Header.Set(hdrStarts, strconv.Itoa(count))
	return m
}

// endStarts settles msg's record once its handling ended: deleted when
// the message is done (handled or dead-lettered), or back to its count
// before this start when a hand-back interrupted it (that start crashed
// nothing). Best effort: a record left behind counts one start too many.
func (r *runner) endStarts(msg Msg, st starts, done bool) {
	if st.last == 0 || !done && !st.recorded {
		return
	}
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	if done || st.count <= 1 {
		// Its own sequence: a newer record, of this key's next message,
		// stays.
		if err := r.deleteDL(ctx, st.last); err != nil {
			r.log.Debug("consume: delete a handling's record", "key", msg.Key, "seq", msg.Seq, "error", err)
		}
		return
	}
	if _, err := r.js.PublishMsg(ctx, r.startsMsg(msg, st.count-1), jetstream.WithExpectStream(r.cfg.DeadLetter),
		jetstream.WithExpectLastSequencePerSubject(st.last)); err != nil {
		r.log.Debug("consume: put back a handling's record", "key", msg.Key, "seq", msg.Seq, "error", err)
	}
}

// unfinishedError dead-letters a message after n unfinished handlings; its
// entry counts those as its attempts.
type unfinishedError int

func (n unfinishedError) Error() string {
	return fmt.Sprintf("%d handling(s) started on redeliveries and never ended: the process handling it died, froze or was cut off each time; re-drive it once the cause is fixed", int(n))
}
