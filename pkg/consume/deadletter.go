package consume

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"

	"github.com/leadflow/leadflow/pkg/eventstore"
)

// Subjects in the dead-letter stream, one message each:
//
//	deadletter.entry.<group>.<key>          the message a key is parked behind
//	deadletter.parked.<group>.<key>.<seq>   a later message of that key, waiting
//	deadletter.request.<group>.<key>        an operator's re-drive or skip
const (
	deadLetterPrefix = "deadletter."
	entryPrefix      = deadLetterPrefix + "entry."
	parkedPrefix     = deadLetterPrefix + "parked."
	requestPrefix    = deadLetterPrefix + "request."
)

func entrySubject(group, key string) string   { return entryPrefix + group + "." + key }
func requestSubject(group, key string) string { return requestPrefix + group + "." + key }
func parkedSubject(group, key string, seq uint64) string {
	return parkedPrefix + group + "." + key + "." + strconv.FormatUint(seq, 10)
}

// Headers of entries, parked messages and requests; their bodies are empty.
const (
	hdrStream    = "Lf-Dl-Stream"
	hdrSubject   = "Lf-Dl-Subject"
	hdrStreamSeq = "Lf-Dl-Stream-Seq"
	hdrPartition = "Lf-Dl-Partition"
	hdrError     = "Lf-Dl-Error"
	hdrAttempts  = "Lf-Dl-Attempts"
	hdrTime      = "Lf-Dl-Time"
	hdrOp        = "Lf-Dl-Op"
)

// Operations on a parked key: an operator's re-drive or skip, and the
// release of parked messages whose dead letter is gone (a member asks for
// it when it finds them).
const (
	opRedrive = "redrive"
	opSkip    = "skip"
	opRelease = "release"
)

// maxErrorLen keeps an error text within what a header comfortably carries.
const maxErrorLen = 4096

// ErrNotFound is returned by Redrive and Skip for a key that has no dead
// letter in the group.
var ErrNotFound = errors.New("consume: dead letter not found")

// ErrOtherDeadLetter is returned by Redrive and Skip when the key's dead
// letter is not the message the request named.
var ErrOtherDeadLetter = errors.New("consume: the key's dead letter is another message")

// ErrRequestPending is returned by Redrive and Skip when the other of the
// two was asked for the key's dead letter and is not served yet: a request
// replaces the pending one, and one operator's skip must not silently
// become another's re-drive.
var ErrRequestPending = errors.New("consume: another request for the dead letter is not served yet")

// parkedKeys are the keys this Run holds back, each with the stream sequence
// of its dead letter (0 for a key whose dead letter is gone but whose parked
// messages are not released yet).
type parkedKeys struct {
	load sync.Mutex // one reload at a time
	// listings counts the reloads begun; done is the last that finished
	// (under load). A reload asked for while another waits or runs is
	// served by the next one to begin: every partition taken asks.
	listings atomic.Uint64
	done     uint64
	mu       sync.Mutex
	keys     map[string]uint64
	// changed are the keys set or dropped since a reload began listing:
	// its listing may predate them, so they win over it. Nil between reloads.
	changed map[string]bool
}

func (k *parkedKeys) get(key string) (uint64, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	seq, ok := k.keys[key]
	return seq, ok
}

func (k *parkedKeys) set(key string, seq uint64) {
	k.mu.Lock()
	k.keys[key] = seq
	if k.changed != nil {
		k.changed[key] = true
	}
	k.mu.Unlock()
}

func (k *parkedKeys) drop(key string) {
	k.mu.Lock()
	delete(k.keys, key)
	if k.changed != nil {
		k.changed[key] = true
	}
	k.mu.Unlock()
}

// listing starts a reload; installing (or abandoning) it ends it. The
// caller holds load.
func (k *parkedKeys) listing() {
	k.mu.Lock()
	k.changed = map[string]bool{}
	k.mu.Unlock()
}

func (k *parkedKeys) install(listed map[string]uint64) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for key := range k.changed {
		if seq, ok := k.keys[key]; ok {
			listed[key] = seq
		} else {
			delete(listed, key)
		}
	}
	k.keys, k.changed = listed, nil
}

func (k *parkedKeys) abandon() {
	k.mu.Lock()
	k.changed = nil
	k.mu.Unlock()
}

// parkedListed, when set, runs in loadParked between listing and installing
// (tests use it to change the parked keys meanwhile).
var parkedListed atomic.Pointer[func()]

// loadParked reads which keys of the group are parked, and asks for the
// release of parked messages whose dead letter is gone (a crash between
// dropping a dead letter and releasing what waited behind it).
func (r *runner) loadParked() error {
	asked := r.parked.listings.Load()
	r.parked.load.Lock()
	defer r.parked.load.Unlock()
	if r.parked.done > asked {
		return nil // one begun since this was asked for has read them
	}
	gen := r.parked.listings.Add(1)
	r.parked.listing()
	defer r.parked.abandon()
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	entries, err := r.subjects(ctx, entryPrefix+r.cfg.Group+".*")
	if err != nil {
		return err
	}
	parked, err := r.subjects(ctx, parkedPrefix+r.cfg.Group+".*.*")
	if err != nil {
		return err
	}
	keys := map[string]uint64{}
	err = lastOf(ctx, r.js, r.cfg.DeadLetter, entries, func(m *jetstream.RawStreamMsg) {
		keys[m.Subject[len(entryPrefix)+len(r.cfg.Group)+1:]] = parseEntry(m.Header).streamSeq
	})
	if err != nil {
		return err
	}
	var orphans []string // one parked subject of each key without an entry
	for _, s := range parked {
		key, _, _ := parseParked(s, r.cfg.Group)
		if _, ok := keys[key]; !ok {
			keys[key] = 0
			orphans = append(orphans, s)
		}
	}
	if f := parkedListed.Load(); f != nil {
		(*f)()
	}
	r.parked.install(keys)
	for _, s := range orphans {
		// Released by whoever owns the partition: ask as an operator would,
		// and let the request find the owner.
		m, err := r.dl.GetLastMsgForSubject(ctx, s)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // released meanwhile
		}
		if err != nil {
			return err
		}
		key, _, _ := parseParked(s, r.cfg.Group)
		n, _ := strconv.Atoi(m.Header.Get(hdrPartition))
		if err := r.request(ctx, key, opRelease, n); err != nil {
			return err
		}
	}
	r.parked.done = gen
	return nil
}

// lastOf calls fn with the last message of each subject that has one,
// a thousand subjects a request (the server answers at most 1,024): one
// get a dead letter made a reload after a mass dead-lettering outlast the
// leases of the first messages.
func lastOf(ctx context.Context, js jetstream.JetStream, stream string, subjects []string, fn func(*jetstream.RawStreamMsg)) error {
	for chunk := range slices.Chunk(subjects, 1000) {
		it, err := jetstreamext.GetLastMsgsFor(ctx, js, stream, chunk)
		if err != nil {
			return fmt.Errorf("consume: read %s: %w", stream, err)
		}
		got := make(map[string]bool, len(chunk))
		for m, err := range it {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			if err != nil {
				return fmt.Errorf("consume: read %s: %w", stream, err)
			}
			got[m.Subject] = true
			fn(m)
		}
		if len(got) == len(chunk) {
			continue
		}
		// Listed by the stream's leader, missing from the batch: gone
		// since, or not yet on the replica that answered. The leader,
		// asked one by one, tells which.
		for _, subj := range chunk {
			if got[subj] {
				continue
			}
			m, err := eventstore.LeaderLast(ctx, js, stream, subj)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("consume: read %s: %w", subj, err)
			}
			fn(m)
		}
	}
	return nil
}

// subjects lists the dead-letter stream's subjects matching filter.
func (r *runner) subjects(ctx context.Context, filter string) ([]string, error) {
	return streamSubjects(ctx, r.dl, filter)
}

func streamSubjects(ctx context.Context, s jetstream.Stream, filter string) ([]string, error) {
	info, err := s.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return nil, fmt.Errorf("consume: list %s: %w", filter, err)
	}
	out := make([]string, 0, len(info.State.Subjects))
	for subj := range info.State.Subjects {
		out = append(out, subj)
	}
	slices.Sort(out)
	return out, nil
}

func parseParked(subject, group string) (key string, seq uint64, ok bool) {
	rest, ok := strings.CutPrefix(subject, parkedPrefix+group+".")
	if !ok {
		return "", 0, false
	}
	key, s, ok := strings.Cut(rest, ".")
	if !ok {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(s, 10, 64)
	return key, seq, err == nil
}

// park records it behind its key's dead letter and acks it. The dead
// message itself, redelivered after a crash between storing its entry and
// terminating it, is only acked.
func (r *runner) park(it *item, dead uint64) bool {
	if it.msg.Seq != dead {
		m := r.parkedMsg(it.msg.Key, it.msg.Subject, it.msg.Seq, it.part.n)
		ok := r.persist(it, "park", func(ctx context.Context) error {
			_, err := r.js.PublishMsg(ctx, m, jetstream.WithExpectStream(r.cfg.DeadLetter))
			return err
		})
		if !ok {
			return false
		}
		r.log.Warn("consume: parked behind a dead letter", "key", it.msg.Key, "seq", it.msg.Seq, "dead", dead)
	}
	_ = it.delivery.Ack()
	return true
}

func (r *runner) parkedMsg(key, subject string, seq uint64, partition int) *nats.Msg {
	m := nats.NewMsg(parkedSubject(r.cfg.Group, key, seq))
	m.Header.Set(hdrStream, r.cfg.Stream)
	m.Header.Set(hdrSubject, subject)
	m.Header.Set(hdrStreamSeq, strconv.FormatUint(seq, 10))
	m.Header.Set(hdrPartition, strconv.Itoa(partition))
	return m
}

type entry struct {
	stream    string
	subject   string
	streamSeq uint64
	partition int
	err       string
	attempts  int
	at        time.Time
}

// deadLetter stores m as its key's dead letter (or parks it behind the one
// the key has: storeDead) and parks the key, then settles the delivery
// (unless m came from the dead-letter stream), so a crash in between means a
// redelivery, never a lost message. It returns the stream sequence of the
// key's dead letter, and false if the partition was handed back first.
func (r *runner) deadLetter(it *item, m Msg, cause error, fromDL bool) (uint64, bool) {
	e := entry{
		stream: m.Stream, subject: m.Subject, streamSeq: m.Seq, partition: it.part.n,
		err: cause.Error(), attempts: r.cfg.Attempts, at: time.Now(),
	}
	if n, ok := errors.AsType[unfinishedError](cause); ok {
		e.attempts = int(n)
	} else if t, ok := errors.AsType[triedError](cause); ok {
		e.attempts = t.n
	}
	var dead uint64
	ok := r.persist(it, "store dead letter", func(ctx context.Context) (err error) {
		dead, err = r.storeDead(ctx, m.Key, e)
		return err
	})
	if !ok {
		return 0, false
	}
	r.parked.set(m.Key, dead)
	if dead != m.Seq {
		r.log.Error("consume: dead behind another dead letter; parked behind it", "key", m.Key, "subject", m.Subject, "seq", m.Seq, "dead", dead, "error", e.err)
		if !fromDL {
			_ = it.delivery.Ack()
		}
		return dead, true
	}
	r.log.Error("consume: dead-lettered; its key is parked", "key", m.Key, "subject", m.Subject, "seq", m.Seq, "error", e.err)
	if !fromDL {
		_ = it.delivery.TermWithReason("dead-lettered: " + headerText(e.err, 200))
	}
	return dead, true
}

// storeDead makes e its key's dead letter, unless the key has one for
// another message already (stored by another member, or before this one
// read the parked keys): the first stays, so the key's messages are
// handled in order, and e is parked behind it. The same message dead again
// updates its entry. It returns the stream sequence of the key's dead
// letter.
func (r *runner) storeDead(ctx context.Context, key string, e entry) (uint64, error) {
	subject := entrySubject(r.cfg.Group, key)
	var last uint64 // the entry's sequence in the dead-letter stream; 0: none
	for range 3 {
		_, err := r.js.PublishMsg(ctx, r.entryMsg(subject, e),
			jetstream.WithExpectStream(r.cfg.DeadLetter), jetstream.WithExpectLastSequencePerSubject(last))
		if err == nil {
			return e.streamSeq, nil
		}
		if !eventstore.IsWrongLastSequence(err) {
			return 0, err
		}
		cur, err := r.dl.GetLastMsgForSubject(ctx, subject)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			last = 0 // re-driven meanwhile
			continue
		case err != nil:
			return 0, err
		}
		was := parseEntry(cur.Header)
		if was.streamSeq != e.streamSeq {
			_, err := r.js.PublishMsg(ctx, r.parkedMsg(key, e.subject, e.streamSeq, e.partition),
				jetstream.WithExpectStream(r.cfg.DeadLetter))
			return was.streamSeq, err
		}
		if !was.at.IsZero() && was.at.Before(e.at) {
			e.at = was.at // failed again (a re-drive): dead, and its key parked, since it first failed
		}
		last = cur.Sequence
	}
	return 0, fmt.Errorf("consume: dead letter of %s: its entry kept changing", key)
}

func (r *runner) entryMsg(subject string, e entry) *nats.Msg {
	m := nats.NewMsg(subject)
	m.Header.Set(hdrStream, e.stream)
	m.Header.Set(hdrSubject, e.subject)
	m.Header.Set(hdrStreamSeq, strconv.FormatUint(e.streamSeq, 10))
	m.Header.Set(hdrPartition, strconv.Itoa(e.partition))
	m.Header.Set(hdrError, headerText(e.err, maxErrorLen))
	m.Header.Set(hdrAttempts, strconv.Itoa(e.attempts))
	m.Header.Set(hdrTime, e.at.UTC().Format(time.RFC3339Nano))
	return m
}

func parseEntry(h nats.Header) entry {
	e := entry{stream: h.Get(hdrStream), subject: h.Get(hdrSubject), err: h.Get(hdrError)}
	e.streamSeq, _ = strconv.ParseUint(h.Get(hdrStreamSeq), 10, 64)
	e.partition, _ = strconv.Atoi(h.Get(hdrPartition))
	e.attempts, _ = strconv.Atoi(h.Get(hdrAttempts))
	e.at, _ = time.Parse(time.RFC3339Nano, h.Get(hdrTime))
	return e
}

// request is an operator's re-drive or skip of one parked key: of the
// dead message at stream sequence seq, or of whichever it is (0).
type request struct {
	op  string
	key string
	seq uint64
}

// request stores an operation on key for the group's owner of partition.
func (r *runner) request(ctx context.Context, key, op string, partition int) error {
	return publishRequest(ctx, r.js, r.cfg.DeadLetter, r.cfg.Group, key, op, partition, 0)
}

func publishRequest(ctx context.Context, js jetstream.JetStream, stream, group, key, op string, partition int, seq uint64, opts ...jetstream.PublishOpt) error {
	m := nats.NewMsg(requestSubject(group, key))
	m.Header.Set(hdrOp, op)
	m.Header.Set(hdrPartition, strconv.Itoa(partition))
	if seq != 0 {
		m.Header.Set(hdrStreamSeq, strconv.FormatUint(seq, 10))
	}
	_, err := js.PublishMsg(ctx, m, append(opts, jetstream.WithExpectStream(stream))...)
	return err
}

// redriveLoop pulls the group's requests. Every member pulls; the owner of
// the key's partition serves it through the key's worker, so it is ordered
// with the key's live messages. Others hand it back for the owner.
func (r *runner) redriveLoop(ctx context.Context) {
	failures := 0
	for ctx.Err() == nil {
		batch, err := r.redr.Fetch(16, jetstream.FetchMaxWait(fetchWait))
		if err == nil {
			for m := range batch.Messages() {
				r.routeRequest(m)
			}
			err = batch.Error() // a pull that ended at once: no consumer to answer it
		}
		if err == nil {
			failures = 0
			continue
		}
		if errors.Is(err, nats.ErrConnectionClosed) {
			return
		}
		failures++
		if errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) {
			// Deleted, or its stream provisioned again: requests would wait
			// for a restart of every member.
			cctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
			c, cerr := r.ensureRedrive(cctx)
			cancel()
			if cerr == nil {
				r.log.Warn("consume: re-drive consumer was gone; created it again", "group", r.cfg.Group)
				r.redr = c
				continue
			}
			err = cerr
		}
		if failures&(failures-1) == 0 {
			r.log.Warn("consume: pull of re-drive requests failed; retrying", "group", r.cfg.Group, "error", err, "failures", failures)
		}
		sleepCtx(ctx, min(100*time.Millisecond<<min(failures-1, 5), 2*time.Second))
	}
}

func (r *runner) routeRequest(m jetstream.Msg) {
	key := strings.TrimPrefix(m.Subject(), requestPrefix+r.cfg.Group+".")
	n, err := strconv.Atoi(m.Headers().Get(hdrPartition))
	if err != nil || n < 0 || n >= len(r.parts) {
		r.log.Error("consume: malformed request", "subject", m.Subject())
		_ = m.Term()
		return
	}
	p := r.parts[n]
	p.mu.Lock()
	ours := p.running && !p.releasing && p.recovered
	if ours {
		seq, _ := strconv.ParseUint(m.Headers().Get(hdrStreamSeq), 10, 64)
		it := &item{msg: Msg{Key: key}, part: p, delivery: m, req: &request{op: m.Headers().Get(hdrOp), key: key, seq: seq}}
		if md, err := m.Metadata(); err == nil {
			it.msg.Delivered = md.NumDelivered // a request served again counts its handlings' starts
		}
		it.touched.Store(time.Now().UnixNano())
		p.held[it] = struct{}{}
		p.mu.Unlock()
		r.dispatch(it)
		return
	}
	p.mu.Unlock()
	_ = m.NakWithDelay(250 * time.Millisecond)
}

// serve runs a request in its key's worker: re-drive (or skip) the dead
// letter, then release the parked messages in order. A message that fails
// again becomes the key's dead letter and the rest stay parked. It reports
// false when the partition is being handed back (the request then goes back
// with it); otherwise the request is settled: acked when done, handed back
// with a delay after a transient error.
func (r *runner) serve(it *item) bool {
	switch r.serveOnce(it) {
	case served:
		_ = it.delivery.Ack()
		// Served requests are not kept: the subject's one message would
		// stay for every key ever re-driven.
		if md, err := it.delivery.Metadata(); err == nil {
			ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
			_ = r.deleteDL(ctx, md.Sequence.Stream)
			cancel()
		}
	case retry:
		_ = it.delivery.NakWithDelay(time.Second)
	case handBack:
		return false
	}
	return true
}

type outcome int

const (
	served outcome = iota
	retry
	handBack
	// deadAgain: served, and a released message failed and is the key's
	// dead letter now, in place of the one the request named.
	deadAgain
)

// serveOnce deletes the entry as soon as its message is handled or
// skipped, before releasing what waited behind it: served again after a
// failure from there on, the request finds parked messages without an
// entry and only releases them, never handling the dead one again after
// them. Every call to the server has its own timeout, since handlers take
// as long as they take.
func (r *runner) serveOnce(it *item) outcome {
	key := it.req.key
	entryMsg, err := r.lastEntry(key)
	if err != nil {
		r.log.Warn("consume: request: read dead letter", "key", key, "error", err)
		return retry
	}
	if entryMsg != nil {
		e := parseEntry(entryMsg.Header)
		switch {
		case it.req.op == opRelease:
			return served // dead-lettered again since it was asked for: the parked ones wait
		case it.req.seq != 0 && e.streamSeq != it.req.seq:
			// The message the operator named failed again and another took
			// its place: not what they asked about.
			r.log.Info("consume: dead letter "+it.req.op+" dropped: the dead letter is another message by now", "key", key, "named", it.req.seq)
			return served
		}
		if it.req.op == opRedrive {
			m, err := r.original(e.streamSeq, key)
			if r.gone(e.streamSeq, err) {
				// Expired (a message TTL, as fired timers have) or removed
				// by limits: there is nothing to handle again, and waiting
				// would park the key for ever.
				r.log.Error("consume: re-drive: the dead message is gone from its stream; its dead letter is dropped unhandled", "key", key, "seq", e.streamSeq)
			} else if err != nil {
				r.log.Warn("consume: re-drive: read message", "key", key, "seq", e.streamSeq, "error", err)
				return retry
			} else if o, ok := r.redriveMsg(it, m); !ok {
				return o
			}
		}
		// A copy of it still parked (a member died between storing it as
		// the dead letter and deleting its parked record) goes first: once
		// the entry is gone, nothing tells it from a message to release.
		purge := func(ctx context.Context) error {
			return r.dl.Purge(ctx, jetstream.WithPurgeSubject(parkedSubject(r.cfg.Group, key, e.streamSeq)))
		}
		if !r.persist(it, "delete the dead letter's parked copy", purge) ||
			!r.persist(it, "delete dead letter", func(ctx context.Context) error { return r.deleteDL(ctx, entryMsg.Sequence) }) {
			return handBack
		}
		r.log.Info("consume: dead letter "+it.req.op+" done", "key", key, "seq", e.streamSeq)
	}
	// No entry (any more): release whatever is parked, whichever request
	// found it so.
	switch o := r.releaseParked(it, key); o {
	case deadAgain:
		return served // the new dead letter is the entry; the key stays parked
	case served:
	default:
		return o
	}
	r.parked.drop(key)
	return served
}

// redriveMsg handles a dead message again. ok: it was handled, and its
// dead letter is to be deleted; else serveOnce returns o.
func (r *runner) redriveMsg(it *item, m Msg) (o outcome, ok bool) {
	key := it.req.key
	h, done, herr := r.handle(it, m)
	switch {
	case !done:
		h.end(false)
		return handBack, false
	case herr != nil:
		r.log.Error("consume: re-driven message failed again", "key", key, "seq", m.Seq, "error", herr)
		_, ok := r.deadLetter(it, m, herr, true)
		h.end(ok)
		if !ok {
			return handBack, false
		}
		return served, false
	}
	h.end(true)
	return served, true
}

// lastEntry reads key's dead letter; nil when it has none.
func (r *runner) lastEntry(key string) (*jetstream.RawStreamMsg, error) {
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	// From the leader: a replica behind would show an entry a request
	// just served deleted (handled again after what it released), or miss
	// one just stored (the key released past its new dead letter).
	m, err := eventstore.LeaderLast(ctx, r.js, r.cfg.DeadLetter, entrySubject(r.cfg.Group, key))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	return m, err
}

// deleteDL deletes message seq of the dead-letter stream; one gone already
// is fine.
func (r *runner) deleteDL(ctx context.Context, seq uint64) error {
	err := r.dl.DeleteMsg(ctx, seq)
	if err == nil {
		return nil
	}
	// The delete API says "not found" only as text: look again.
	if _, gerr := r.dl.GetMsg(ctx, seq); errors.Is(gerr, jetstream.ErrMsgNotFound) {
		return nil
	}
	return err
}

// releaseParked handles key's parked messages in order, deleting each once
// handled, until none is left (it lists again in case one was parked
// meanwhile). One that fails again becomes the key's dead letter (the rest
// stay parked), and releaseParked reports deadAgain.
func (r *runner) releaseParked(it *item, key string) outcome {
	for {
		waiting, err := r.listParked(key)
		if err != nil {
			r.log.Warn("consume: list parked", "key", key, "error", err)
			return retry
		}
		if len(waiting) == 0 {
			return served
		}
		for _, seq := range waiting {
			subject := parkedSubject(r.cfg.Group, key, seq)
			purge := func(ctx context.Context) error {
				return r.dl.Purge(ctx, jetstream.WithPurgeSubject(subject))
			}
			m, err := r.original(seq, key)
			if r.gone(seq, err) {
				// Gone from its stream (see serveOnce): the next one's turn.
				r.log.Error("consume: release parked: the message is gone from its stream; released unhandled", "key", key, "seq", seq)
				if !r.persist(it, "release parked: delete", purge) {
					return handBack
				}
				continue
			}
			if err != nil {
				r.log.Warn("consume: release parked: read message", "key", key, "seq", seq, "error", err)
				return retry
			}
			h, done, herr := r.handle(it, m)
			if !done {
				h.end(false)
				return handBack
			}
			if herr != nil {
				dead, ok := r.deadLetter(it, m, herr, true)
				h.end(ok)
				if !ok {
					return handBack
				}
				if dead == seq && !r.persist(it, "release parked: delete", purge) {
					return handBack
				}
				return deadAgain
			}
			h.end(true)
			if !r.persist(it, "release parked: delete", purge) {
				return handBack
			}
		}
	}
}

// listParked returns the stream sequences parked behind key, in order.
func (r *runner) listParked(key string) ([]uint64, error) {
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	subjects, err := r.subjects(ctx, parkedPrefix+r.cfg.Group+"."+key+".*")
	if err != nil {
		return nil, err
	}
	var seqs []uint64
	for _, s := range subjects {
		if _, seq, ok := parseParked(s, r.cfg.Group); ok {
			seqs = append(seqs, seq)
		}
	}
	slices.Sort(seqs)
	return seqs, nil
}

// original reads a message back from its stream, as a handler sees it.
func (r *runner) original(seq uint64, key string) (Msg, error) {
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	m, err := r.src.GetMsg(ctx, seq)
	if err != nil {
		return Msg{}, err
	}
	return Msg{Stream: r.cfg.Stream, Subject: m.Subject, Key: key, Seq: m.Sequence, Time: m.Time,
		Header: stripDirectGetHeaders(m.Header), Data: m.Data}, nil
}

// gone reports whether err, from reading message seq, means the message
// is gone from its stream. A direct get may be answered by a replica
// that lags behind, so its "not found" is confirmed by the stream's
// leader (the message get API).
func (r *runner) gone(seq uint64, err error) bool {
	if !errors.Is(err, jetstream.ErrMsgNotFound) {
		return false
	}
	ctx, cancel := context.WithTimeout(r.ioctx, ioTimeout)
	defer cancel()
	_, err = eventstore.LeaderMsg(ctx, r.js, r.cfg.Stream, seq)
	return errors.Is(err, jetstream.ErrMsgNotFound)
}

// stripDirectGetHeaders removes what a get adds to a message's own headers,
// so a re-driven message looks like a delivered one.
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

// headerText makes s fit a header value: one line, valid UTF-8, at most n bytes.
func headerText(s string, n int) string {
	s = strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
