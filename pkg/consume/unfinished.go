package consume

import (
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

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
// process: a crash then counts against it, not against the messages that
// happened to run beside it.

const startedPrefix = deadLetterPrefix + "started."

func startedSubject(group, key string) string { return startedPrefix + group + "." + key }

const hdrStarts = "Lf-Dl-Starts"

// starts is a message's record of unfinished handlings: how many, and the
// record's sequence in the dead-letter stream (0: none).
type starts struct {
	tracked  bool // a redelivery, whose handlings are recorded
	count    int
	last     uint64
	recorded bool // this handling's start is in the record
}

// readStarts reads it's record; a record of another message of the key
// (one whose ack came before its record was deleted) counts as none. It
// reports false if the partition was handed back first.
func (r *runner) readStarts(it *item) (starts, bool) {
	st := starts{tracked: true}
	ok := r.persist(it, "read unfinished handlings", func(ctx context.Context) error {
		var err error
		st, err = r.startsOf(ctx, it)
		return err
	})
	return st, ok
}

func (r *runner) startsOf(ctx context.Context, it *item) (starts, error) {
	st := starts{tracked: true}
	m, err := r.dl.GetLastMsgForSubject(ctx, startedSubject(r.cfg.Group, it.msg.Key))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return st, nil
	case err != nil:
		return st, err
	}
	st.last = m.Sequence
	if seq, _ := strconv.ParseUint(m.Header.Get(hdrStreamSeq), 10, 64); seq == it.msg.Seq {
		st.count, _ = strconv.Atoi(m.Header.Get(hdrStarts))
	}
	return st, nil
}

// recordStart stores one more unfinished handling of it before it starts.
// The write expects the record read, so two members never count one
// start; on a conflict (a replica behind answered the read, or a record
// left by an earlier handling) the record is read again. It reports false
// if the partition was handed back first.
func (r *runner) recordStart(it *item, st *starts) bool {
	return r.persist(it, "record a handling", func(ctx context.Context) error {
		var err error
		for range 5 {
			m := nats.NewMsg(startedSubject(r.cfg.Group, it.msg.Key))
			m.Header.Set(hdrStreamSeq, strconv.FormatUint(it.msg.Seq, 10))
			m.Header.Set(hdrStarts, strconv.Itoa(st.count+1))
			var ack *jetstream.PubAck
			ack, err = r.js.PublishMsg(ctx, m, jetstream.WithExpectStream(r.cfg.DeadLetter),
				jetstream.WithExpectLastSequencePerSubject(st.last))
			if err == nil {
				st.count, st.last, st.recorded = st.count+1, ack.Sequence, true
				return nil
			}
			if !eventstore.IsWrongLastSequence(err) {
				return err
			}
			cur, rerr := r.startsOf(ctx, it)
			if rerr != nil {
				return rerr
			}
			*st = cur
		}
		return err
	})
}

// endStarts settles it's record once its handling ended: deleted when the
// message is done (handled or dead-lettered), or back to its count before this start when a hand-back
// interrupted it (that start did not crash anything). Best effort: a
// record left behind only counts one start too many.
func (r *runner) endStarts(it *item, st starts, done bool) {
	if st.last == 0 || !done && !st.recorded {
		return
	}
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	if done || st.count <= 1 {
		// Its own sequence: a newer record, of this key's next message,
		// stays.
		if err := r.dl.DeleteMsg(ctx, st.last); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			r.log.Debug("consume: delete a handling's record", "key", it.msg.Key, "seq", it.msg.Seq, "error", err)
		}
		return
	}
	m := nats.NewMsg(startedSubject(r.cfg.Group, it.msg.Key))
	m.Header.Set(hdrStreamSeq, strconv.FormatUint(it.msg.Seq, 10))
	m.Header.Set(hdrStarts, strconv.Itoa(st.count-1))
	if _, err := r.js.PublishMsg(ctx, m, jetstream.WithExpectStream(r.cfg.DeadLetter),
		jetstream.WithExpectLastSequencePerSubject(st.last)); err != nil {
		r.log.Debug("consume: put back a handling's record", "key", it.msg.Key, "seq", it.msg.Seq, "error", err)
	}
}

// unfinishedError dead-letters a message after n unfinished handlings; its
// entry counts those as its attempts.
type unfinishedError int

func (n unfinishedError) Error() string {
	return fmt.Sprintf("%d handling(s) started on redeliveries and never ended: the process handling it died, froze or was cut off each time; re-drive it once the cause is fixed", int(n))
}
