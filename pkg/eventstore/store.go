package eventstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Headers Leadflow sets on every stored message, so that readers can
// route and trace without decoding the payload.
const (
	HeaderType        = "Lf-Type"
	HeaderEventID     = "Lf-Event-Id"
	HeaderTraceparent = "traceparent"
	HeaderTracestate  = "tracestate"
	typeClaim         = "Claim"
)

// VersionUnknown is the version_before of the second and later events of
// one commit on one subject: the sequence of the event before it is not
// known until the commit is stored, so a reader holding the lead at any
// version reads on from the stream instead of extending.
const VersionUnknown = math.MaxUint64

// MaxBatch is the server's limit of messages in one atomic batch.
const MaxBatch = 1000

// Store appends to and reads from the event stream.
type Store struct {
	js     jetstream.JetStream
	stream string

	mu         sync.Mutex
	st         jetstream.Stream // for single direct gets; see direct
	replicated bool
}

// New returns a Store on the named stream (see EnsureStream).
func New(js jetstream.JetStream, stream string) *Store {
	if stream == "" {
		stream = DefaultStream
	}
	return &Store{js: js, stream: stream}
}

// Stream is the name of the stream the store writes to.
func (s *Store) Stream() string { return s.stream }

// Write is one message of a Commit: an event, a claim or another record
// on one subject.
type Write struct {
	Subject string
	// Expect is the subject's last sequence this write requires, checked by
	// the server; 0 means the subject must have no message yet.
	Expect uint64
	// ExpectFilter, when set, makes the server check Expect against the
	// last sequence of every subject matching this filter (wildcards
	// allowed) instead of Subject alone, so one write can require that a
	// group of subjects is untouched (Expect 0: none of them has a
	// message).
	ExpectFilter string
	// Unchecked skips the check. Only later writes to a subject that an
	// earlier write of the same commit already checks may be unchecked.
	Unchecked bool
	// Exactly one of Event, Claim and Record is set.
	Event *eventv1.Event
	Claim *eventv1.Claim
	// Record is any other message (an idempotency record), stored with its
	// message name as Lf-Type and RecordID as Lf-Event-Id.
	Record   proto.Message
	RecordID string
}

// Append appends events to one subject, atomically, if the subject is at
// version expected (0: no events yet). It returns the subject's new version.
// It returns a *ConflictError (errors.Is ErrConflict) when another writer
// got there first; nothing is stored then.
func (s *Store) Append(ctx context.Context, subject string, expected uint64, events ...*eventv1.Event) (uint64, error) {
	if len(events) == 0 {
		return expected, nil
	}
	writes := make([]Write, len(events))
	for i, ev := range events {
		writes[i] = Write{Subject: subject, Expect: expected, Unchecked: i > 0, Event: ev}
	}
	seqs, err := s.Commit(ctx, writes...)
	if err != nil {
		return 0, err
	}
	return seqs[len(seqs)-1], nil
}

// Commit stores writes all or nothing and returns the stream sequence of
// each. It stamps every event with the version it is appended at
// (Event.version_before: the Expect of its subject's checked write), so a
// reader that keeps state can tell an event that extends it from one after
// a gap. One write is a plain publish deduplicated by its event id; more are
// one atomic batch (at most MaxBatch), in which a single failed expectation
// rejects every write. A conflict returns a *ConflictError naming the
// subject that moved.
//
// An attempt that got no answer (timeout, server restart, no responders)
// is sent again until ctx ends, and a caller may send the same writes again
// too. Whether they were stored is decided by event id: a commit whose
// checked expectation failed looks for its own first message right after
// the version it expected, which is where the server put it if it stored
// it, whatever was written after. So a repeat answers the first sequences
// (that needs at least one checked write). When ctx ends before any answer
// says what happened, Commit returns an *UnknownOutcomeError (errors.Is
// ErrUnknownOutcome): the writes may or may not be stored, and sending them
// again finds out.
func (s *Store) Commit(ctx context.Context, writes ...Write) ([]uint64, error) {
	if len(writes) == 0 {
		return nil, nil
	}
	if len(writes) > MaxBatch {
		return nil, fmt.Errorf("eventstore: %d writes in one commit, at most %d", len(writes), MaxBatch)
	}
	expect := map[string]uint64{}
	for _, w := range writes {
		if !w.Unchecked {
			expect[w.Subject] = w.Expect
		}
	}
	stamped := map[string]bool{}
	for _, w := range writes {
		if w.Event == nil {
			continue
		}
		w.Event.VersionBefore = expect[w.Subject]
		if stamped[w.Subject] {
			// The event before it in this commit has no sequence yet.
			w.Event.VersionBefore = VersionUnknown
		}
		stamped[w.Subject] = true
	}
	msgs, err := messages(writes)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("commit %s: %w", writes[0].Subject, err)
	}

	// sent: some attempt may have reached the server without an answer, so
	// the writes may be stored even if a later attempt fails.
	sent := false
	var last error
	for attempt := 0; ; attempt++ {
		actx, acancel := context.WithTimeout(ctx, attemptTimeout)
		seqs, err := s.commitOnce(actx, msgs)
		acancel()
		if err == nil {
			return seqs, nil
		}
		last = err
		if IsWrongLastSequence(err) {
			seqs, err := s.resolveConflict(ctx, writes)
			var ce *ConflictError
			var unknown *UnknownOutcomeError
			switch {
			case err == nil || errors.As(err, &unknown):
				return seqs, err
			case !errors.As(err, &ce) && sent:
				// The look-up failed, and an attempt without an answer may
				// be stored: nobody can tell.
				return nil, &UnknownOutcomeError{Subject: writes[0].Subject, Err: err}
			case !errors.As(err, &ce):
				return nil, err
			}
			if ce.Actual != ce.Expected {
				if sent {
					// The look-up's two reads go out together: an earlier
					// attempt still replicating may have landed between
					// them, and it is what moved the subject. Look once
					// more, now that it has moved; a look that fails
					// cannot tell.
					seqs, found, serr := s.stored(ctx, writes)
					switch {
					case serr != nil:
						return nil, &UnknownOutcomeError{Subject: writes[0].Subject, Err: serr}
					case found:
						return seqs, nil
					}
				}
				return nil, err
			}
			// Refused, yet nothing moved: the leader refuses a batch while
			// one on its subject is in process, whatever is stored, and an
			// earlier attempt of this one (or of a call that sent these
			// very writes before, unanswered) may be that batch, waiting
			// for its replicas. Look again once it is through; if time
			// runs out first, nobody can tell.
			last, sent = err, true
			if sleep(ctx, backoff(attempt)) != nil {
				break
			}
			continue
		}
		answered, retry := classify(err)
		sent = sent || !answered
		if !retry {
			break
		}
		if sleep(ctx, backoff(attempt)) != nil {
			break
		}
	}
	if !sent {
		return nil, fmt.Errorf("commit %s: %w", writes[0].Subject, last)
	}
	// Look before giving up: an attempt that timed out may have been
	// stored all the same.
	if ctx.Err() == nil {
		if seqs, found, err := s.stored(ctx, writes); err == nil && found {
			return seqs, nil
		}
	}
	var ce *ConflictError
	if errors.As(last, &ce) {
		// A refusal while nothing moved says nothing of this commit: an
		// unknown outcome must not match ErrConflict, or callers decide
		// again.
		last = fmt.Errorf("refused while a batch on %s was in process", ce.Subject)
	}
	return nil, &UnknownOutcomeError{Subject: writes[0].Subject, Err: errors.Join(last, ctx.Err())}
}

// CommitEach commits each write on its own, as Commit with that one write
// would, but sends them all at once (asynchronous publishes on the one
// connection), so that many independent writes, such as the first events
// of a bulk import's new leads, cost about one round trip instead of one
// each. It returns each write's sequence or error; a refused expectation
// is resolved as Commit resolves it. A write whose answer does not come
// within an attempt's time is sent again by Commit until ctx ends, and
// found when it was stored.
func (s *Store) CommitEach(ctx context.Context, writes []Write) ([]uint64, []error) {
	seqs := make([]uint64, len(writes))
	errs := make([]error, len(writes))
	if len(writes) == 0 {
		return seqs, errs
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	due, _ := ctx.Deadline()
	futures := make([]jetstream.PubAckFuture, len(writes))
	for i, w := range writes {
		if w.Event != nil {
			w.Event.VersionBefore = w.Expect
		}
		msgs, err := messages([]Write{w})
		if err != nil {
			errs[i] = err
			continue
		}
		// When the window of unacknowledged publishes is full, wait for
		// room until the deadline rather than 200 ms.
		if futures[i], err = s.js.PublishMsgAsync(msgs[0], jetstream.WithStallWait(time.Until(due))); err != nil {
			errs[i] = err
		}
	}
	// Answers not in by one attempt's time are sent again through Commit,
	// which also looks for a write stored whose answer was lost.
	answerBy, stop := context.WithTimeout(ctx, attemptTimeout)
	defer stop()
	settling := make(chan struct{}, maxSettling)
	var wg sync.WaitGroup
	for i, f := range futures {
		if f == nil {
			continue
		}
		var err error
		select {
		case ack := <-f.Ok():
			seqs[i] = ack.Sequence
			continue
		case err = <-f.Err():
		case <-answerBy.Done():
			// An answer in by now wins over the timer (select picks at
			// random among ready cases).
			select {
			case ack := <-f.Ok():
				seqs[i] = ack.Sequence
				continue
			case err = <-f.Err():
			default:
				if ctx.Err() != nil {
					errs[i] = &UnknownOutcomeError{Subject: writes[i].Subject, Err: ctx.Err()}
					continue
				}
				err = errNoAnswer
			}
		}
		// Settle it the way Commit does: a refused expectation by looking
		// for the write, no answer by sending it again.
		settle := func() ([]uint64, error) { return s.Commit(ctx, writes[i]) }
		switch {
		case IsWrongLastSequence(err):
			settle = func() ([]uint64, error) { return s.resolveConflict(ctx, writes[i:i+1]) }
		case answeredOnly(err):
			errs[i] = fmt.Errorf("commit %s: %w", writes[i].Subject, err)
			continue
		}
		// Sent and not answered (no answer in time, a dropped
		// connection): it may be stored.
		answered, _ := classify(err)
		unanswered := !answered
		wg.Go(func() {
			select {
			case settling <- struct{}{}:
			case <-ctx.Done():
				// Sent, never settled: it may be stored.
				errs[i] = &UnknownOutcomeError{Subject: writes[i].Subject, Err: ctx.Err()}
				return
			}
			defer func() { <-settling }()
			got, err := settle()
			if err != nil && unanswered && ctx.Err() != nil && !errors.Is(err, ErrUnknownOutcome) {
				err = &UnknownOutcomeError{Subject: writes[i].Subject, Err: err}
			}
			if errs[i] = err; err == nil {
				seqs[i] = got[0]
			}
		})
	}
	wg.Wait()
	return seqs, errs
}

// maxSettling bounds the writes CommitEach settles through Commit at
// once: when answers are slow, the server is too.
const maxSettling = 64

// errNoAnswer is a write of CommitEach not answered in an attempt's time.
var errNoAnswer = errors.New("eventstore: no answer in time")

// answeredOnly reports an error by which the server refused a write
// for good: nothing was stored and sending it again changes nothing.
func answeredOnly(err error) bool {
	answered, retry := classify(err)
	return answered && !retry
}

// ErrUnknownOutcome is matched (errors.Is) by every *UnknownOutcomeError.
var ErrUnknownOutcome = errors.New("eventstore: outcome unknown")

// UnknownOutcomeError is a commit that may or may not have been stored:
// the server did not answer before the deadline. Committing the very same
// writes again is safe and says which it was.
type UnknownOutcomeError struct {
	// Subject is the first write's subject.
	Subject string
	// Err is the last attempt's error.
	Err error
}

func (e *UnknownOutcomeError) Error() string {
	return fmt.Sprintf("eventstore: commit to %s: outcome unknown: %v", e.Subject, e.Err)
}

// Is makes errors.Is(err, ErrUnknownOutcome) true.
func (e *UnknownOutcomeError) Is(target error) bool { return target == ErrUnknownOutcome }

// Unwrap returns the last attempt's error.
func (e *UnknownOutcomeError) Unwrap() error { return e.Err }

// attemptTimeout bounds one attempt, so that a request lost on the way
// (a reconnect, a leader change) is sent again within the caller's
// deadline instead of using all of it.
const attemptTimeout = 2 * time.Second

// classify says what a failed attempt tells: answered, the server refused
// it and stored nothing; retry, another attempt may succeed.
func classify(err error) (answered, retry bool) {
	var apiErr *jetstream.APIError
	switch {
	case Unavailable(err):
		// Nobody stored it: a restart or an election.
		return true, true
	case HasErrorCode(err, errCodeDuplicateInProcess):
		// An earlier attempt is being stored: the next one answers it.
		return false, true
	case HasErrorCode(err, errCodeBatchIncomplete):
		// Nothing of it stored, and no refusal of its content.
		return true, true
	case errors.As(err, &apiErr):
		// Too many batches in flight is back-pressure, not a refusal.
		return true, apiErr.Code == 429
	case errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrConnectionDraining):
		return false, false
	}
	// A timeout, a lost connection, an answer that makes no sense: the
	// request may have been stored.
	return false, true
}

// messages encodes the writes once, so every attempt sends the same bytes.
func messages(writes []Write) ([]*nats.Msg, error) {
	msgs := make([]*nats.Msg, len(writes))
	for i, w := range writes {
		m, err := w.msg()
		if err != nil {
			return nil, err
		}
		msgs[i] = m
	}
	if len(msgs) == 1 {
		// The message id makes a retried publish a no-op within the
		// stream's duplicates window; a batch may not carry one.
		msgs[0].Header.Set(jetstream.MsgIDHeader, msgs[0].Header.Get(HeaderEventID))
	}
	return msgs, nil
}

// answer and lookFailed, set by tests, answer an attempt without
// sending it (where answer gives an error: context.DeadlineExceeded is an
// attempt lost on the way) and fail a look for a commit ("stored") or at
// a subject's last sequence ("last"), where they say so.
var (
	answer     atomic.Pointer[func() error]
	lookFailed atomic.Pointer[func(look string) bool]
)

func (s *Store) commitOnce(ctx context.Context, msgs []*nats.Msg) ([]uint64, error) {
	if f := answer.Load(); f != nil {
		if err := (*f)(); err != nil {
			return nil, err
		}
	}
	if len(msgs) == 1 {
		ack, err := s.js.PublishMsg(ctx, copyMsg(msgs[0]))
		if err != nil {
			return nil, err
		}
		return []uint64{ack.Sequence}, nil
	}
	batch := make([]*nats.Msg, len(msgs))
	for i, m := range msgs {
		batch[i] = copyMsg(m)
	}
	ack, err := jetstreamext.PublishMsgBatch(ctx, s.js, batch,
		// One round trip: the commit's answer covers the whole batch.
		jetstreamext.BatchFlowControl{AckFirst: false})
	if err != nil {
		return nil, err
	}
	// The server stores a batch contiguously, ending at ack.Sequence.
	seqs := make([]uint64, len(msgs))
	first := ack.Sequence - uint64(len(msgs)) + 1
	for i := range seqs {
		seqs[i] = first + uint64(i)
	}
	return seqs, nil
}

// copyMsg gives each attempt its own message: a publish sets headers
// (batch ids, reply subjects) on what it sends.
func copyMsg(m *nats.Msg) *nats.Msg {
	c := nats.NewMsg(m.Subject)
	for k, v := range m.Header {
		c.Header[k] = append([]string(nil), v...)
	}
	c.Data = m.Data
	return c
}

// resolveConflict tells a commit that lost its race from one whose earlier
// attempt (or an earlier call with the same writes) was stored and only
// its answer was lost: that is success, not a conflict, even when other
// writes followed it. The look-up for the commit and for the versions a
// conflict reports go out together: a lost race costs one round trip.
func (s *Store) resolveConflict(ctx context.Context, writes []Write) ([]uint64, error) {
	var (
		wg       sync.WaitGroup
		seqs     []uint64
		found    bool
		storeErr error
	)
	actual := make([]uint64, len(writes))
	errs := make([]error, len(writes))
	wg.Go(func() { seqs, found, storeErr = s.stored(ctx, writes) })
	for i, w := range writes {
		if !w.Unchecked {
			wg.Go(func() { actual[i], errs[i] = s.lastSeq(ctx, w.checked()) })
		}
	}
	wg.Wait()
	if storeErr != nil {
		// The refusal may be this very commit, stored before: without the
		// look-up nobody can tell.
		return nil, &UnknownOutcomeError{Subject: writes[0].Subject, Err: storeErr}
	}
	if found {
		return seqs, nil
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("resolve conflict: %w", err)
	}
	for i, w := range writes {
		if !w.Unchecked && actual[i] != w.Expect {
			return nil, &ConflictError{Subject: w.Subject, Expected: w.Expect, Actual: actual[i]}
		}
	}
	// The subject moved and, by the time we looked, matched again: it
	// cannot have (versions only grow) unless the check raced a write we
	// cannot see. Report the first checked write as the conflict.
	return nil, &ConflictError{Subject: writes[0].Subject, Expected: writes[0].Expect, Actual: actual[0]}
}

// stored reports whether this very commit is in the stream, and at which
// sequences. If the server stored it, its checked expectation held at that
// moment, so the write is the first message matching its check after
// Expect, whatever came later: one direct get finds it. Atomic batches
// are stored whole and contiguously, so one write tells for all. Event
// ids are UUIDv7s minted per command, so an event is the best witness.
func (s *Store) stored(ctx context.Context, writes []Write) ([]uint64, bool, error) {
	if f := lookFailed.Load(); f != nil && (*f)("stored") {
		return nil, false, errors.New("look failed (a test's)")
	}
	probe := -1
	for i, w := range writes {
		if w.Unchecked {
			continue
		}
		if probe < 0 || (w.Event != nil && writes[probe].Event == nil) {
			probe = i
		}
	}
	if probe < 0 {
		return nil, false, nil
	}
	w := writes[probe]
	// Looked for on its own subject: if the server stored it, nothing
	// matching its check came between Expect and it, so it is also the
	// subject's first message after Expect. A literal subject is found
	// through the subject index; a wildcard check filter (ExpectFilter)
	// may make the server search every block.
	m, ok, err := s.Next(ctx, w.Subject, w.Expect)
	if err != nil || !ok {
		return nil, false, err
	}
	if m.Header.Get(HeaderEventID) != w.id() {
		return nil, false, nil
	}
	seqs := make([]uint64, len(writes))
	for i := range seqs {
		seqs[i] = m.Seq - uint64(probe) + uint64(i)
	}
	return seqs, true, nil
}

// Next returns the first message on subject (a filter: wildcards allowed)
// after stream sequence after, and false when there is none. One single
// direct get, served from the stream's subject index; on a replicated
// stream the leader is asked instead. A follower can be behind the
// leader, and also ahead of what the leader has applied: a commit found
// there (see stored) and reported as done could be missing from the next
// command's load, which reads the leader's.
func (s *Store) Next(ctx context.Context, subject string, after uint64) (Raw, bool, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	var m *jetstream.RawStreamMsg
	_, leader, err := s.direct(ctx)
	switch {
	case err != nil:
	case leader:
		m, err = s.leaderGet(ctx, leaderGetRequest{Seq: after + 1, NextFor: subject})
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			m, err = nil, nil
		}
	default:
		m, err = s.next(ctx, subject, after)
	}
	if err != nil || m == nil {
		return Raw{}, false, err
	}
	return rawOf(m), true, nil
}

// NextEvent is Next, decoded: the subject's first event after stream
// sequence after, and false when there is none.
func (s *Store) NextEvent(ctx context.Context, subject string, after uint64) (Record, bool, error) {
	raw, ok, err := s.Next(ctx, subject, after)
	if err != nil || !ok {
		return Record{}, false, err
	}
	ev, err := DecodeEvent(raw.Data)
	if err != nil {
		return Record{}, false, fmt.Errorf("%s seq %d: %w", raw.Subject, raw.Seq, err)
	}
	return Record{Seq: raw.Seq, Subject: raw.Subject, Time: raw.Time, Event: ev, Type: raw.Header.Get(HeaderType)}, true, nil
}

// next is Next's single direct get; nil when there is no such message.
func (s *Store) next(ctx context.Context, subject string, after uint64) (*jetstream.RawStreamMsg, error) {
	st, _, err := s.direct(ctx)
	if err != nil {
		return nil, fmt.Errorf("next on %s after %d: %w", subject, after, err)
	}
	m, err := st.GetMsg(ctx, after+1, jetstream.WithGetMsgSubject(subject))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("next on %s after %d: %w", subject, after, err)
	}
	return m, nil
}

// lastSeq is the last sequence of any subject matching filter, 0 if none.
func (s *Store) lastSeq(ctx context.Context, filter string) (uint64, error) {
	if f := lookFailed.Load(); f != nil && (*f)("last") {
		return 0, errors.New("look failed (a test's)")
	}
	last, err := s.Last(ctx, filter)
	if err != nil {
		return 0, err
	}
	var seq uint64
	for _, m := range last {
		seq = max(seq, m.Seq)
	}
	return seq, nil
}

// checked is what the write's expectation is checked against.
func (w Write) checked() string {
	if w.ExpectFilter != "" {
		return w.ExpectFilter
	}
	return w.Subject
}

func (w Write) id() string {
	switch {
	case w.Event != nil:
		return w.Event.GetEventId()
	case w.Claim != nil:
		return w.Claim.GetEventId()
	}
	return w.RecordID
}

func (w Write) msg() (*nats.Msg, error) {
	m := nats.NewMsg(w.Subject)
	var (
		data []byte
		err  error
	)
	switch {
	case w.Event != nil && w.Claim == nil:
		ev := w.Event
		if ev.GetEventId() == "" || ev.GetEventType() == "" {
			return nil, fmt.Errorf("eventstore: event on %s lacks id or type", w.Subject)
		}
		data, err = proto.Marshal(ev)
		m.Header.Set(HeaderType, ev.GetEventType())
		m.Header.Set(HeaderEventID, ev.GetEventId())
		if tp := ev.GetTrace().GetTraceparent(); tp != "" {
			m.Header.Set(HeaderTraceparent, tp)
			if ts := ev.GetTrace().GetTracestate(); ts != "" {
				m.Header.Set(HeaderTracestate, ts)
			}
		}
	case w.Claim != nil && w.Event == nil && w.Record == nil:
		data, err = proto.Marshal(w.Claim)
		m.Header.Set(HeaderType, typeClaim)
		m.Header.Set(HeaderEventID, w.Claim.GetEventId())
	case w.Record != nil && w.Event == nil && w.Claim == nil:
		if w.RecordID == "" {
			return nil, fmt.Errorf("eventstore: record on %s lacks an id", w.Subject)
		}
		data, err = proto.Marshal(w.Record)
		m.Header.Set(HeaderType, string(w.Record.ProtoReflect().Descriptor().Name()))
		m.Header.Set(HeaderEventID, w.RecordID)
	default:
		return nil, fmt.Errorf("eventstore: write to %s needs exactly one of event, claim and record", w.Subject)
	}
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", w.Subject, err)
	}
	m.Data = data
	if !w.Unchecked {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.Expect, 10))
		if w.ExpectFilter != "" {
			m.Header.Set(jetstream.ExpectedLastSubjSeqSubjHeader, w.ExpectFilter)
		}
	}
	return m, nil
}

// AfterConflict waits before a command's next try after it lost an
// optimistic-concurrency race: a random wait that doubles with each loss
// (up to 64 ms), so racers on one lead spread out instead of colliding
// again in lockstep. It returns ctx's error if ctx ends first.
func AfterConflict(ctx context.Context, attempt int) error {
	return sleep(ctx, time.Duration(rand.Int64N(int64(time.Millisecond)<<min(attempt, 6))))
}

func backoff(attempt int) time.Duration {
	d := 25 * time.Millisecond << min(attempt, 5)
	return min(d, time.Second)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
