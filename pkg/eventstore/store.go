package eventstore

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
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

// MaxBatch is the server's limit of messages in one atomic batch.
const MaxBatch = 1000

// Store appends to and reads from the event stream.
type Store struct {
	js     jetstream.JetStream
	stream string
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

// Write is one message of a Commit: an event or a claim on one subject.
type Write struct {
	Subject string
	// Expect is the subject's last sequence this write requires, checked by
	// the server; 0 means the subject must have no message yet.
	Expect uint64
	// Unchecked skips the check. Only later writes to a subject that an
	// earlier write of the same commit already checks may be unchecked.
	Unchecked bool
	// Exactly one of Event and Claim is set.
	Event *eventv1.Event
	Claim *eventv1.Claim
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
// A commit whose acknowledgement was lost (timeout, server restart) is sent
// again, and a caller may send the same writes again too: the server drops
// a repeated single publish by its message id, and a repeated batch fails
// its expectations against itself, which Commit recognises by event id and
// reports as success with the first sequences. That needs at least one
// checked write in the commit.
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
	for _, w := range writes {
		if w.Event != nil {
			w.Event.VersionBefore = expect[w.Subject]
		}
	}
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()

	for attempt := 0; ; attempt++ {
		seqs, err := s.commitOnce(ctx, writes)
		if err == nil {
			return seqs, nil
		}
		if IsWrongLastSequence(err) {
			return s.resolveConflict(ctx, writes)
		}
		if !isTransient(err) || ctx.Err() != nil {
			return nil, fmt.Errorf("commit %s: %w", writes[0].Subject, err)
		}
		if err := sleep(ctx, backoff(attempt)); err != nil {
			return nil, fmt.Errorf("commit %s: %w", writes[0].Subject, errors.Join(err, errUnknownOutcome))
		}
	}
}

// errUnknownOutcome marks a commit that may or may not have been stored.
var errUnknownOutcome = errors.New("outcome unknown: the server did not answer")

func (s *Store) commitOnce(ctx context.Context, writes []Write) ([]uint64, error) {
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
		ack, err := s.js.PublishMsg(ctx, msgs[0])
		if err != nil {
			return nil, err
		}
		return []uint64{ack.Sequence}, nil
	}
	ack, err := jetstreamext.PublishMsgBatch(ctx, s.js, msgs,
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

// resolveConflict finds the subject that moved. When every subject already
// ends with this commit's own message, an earlier attempt succeeded and
// only its answer was lost: that is success, not a conflict.
func (s *Store) resolveConflict(ctx context.Context, writes []Write) ([]uint64, error) {
	subjects := make([]string, 0, len(writes))
	lastID := map[string]string{}
	for _, w := range writes {
		if _, ok := lastID[w.Subject]; !ok {
			subjects = append(subjects, w.Subject)
		}
		lastID[w.Subject] = w.id()
	}
	last, err := s.Last(ctx, subjects...)
	if err != nil {
		return nil, fmt.Errorf("resolve conflict: %w", err)
	}
	// Event ids are UUIDv7s minted per command, so finding ours at the end
	// of every subject can only mean this very commit was stored.
	own := true
	for _, subj := range subjects {
		if m, ok := last[subj]; !ok || m.Header.Get(HeaderEventID) != lastID[subj] {
			own = false
			break
		}
	}
	if own {
		end := last[writes[len(writes)-1].Subject].Seq
		seqs := make([]uint64, len(writes))
		for i := range seqs {
			seqs[i] = end - uint64(len(writes)-1-i)
		}
		return seqs, nil
	}
	for _, w := range writes {
		if w.Unchecked {
			continue
		}
		if actual := last[w.Subject].Seq; actual != w.Expect {
			return nil, &ConflictError{Subject: w.Subject, Expected: w.Expect, Actual: actual}
		}
	}
	// The subject moved and, by the time we looked, matched again: it
	// cannot have (versions only grow) unless the check raced a write we
	// cannot see. Report the first checked write as the conflict.
	w := writes[0]
	return nil, &ConflictError{Subject: w.Subject, Expected: w.Expect, Actual: last[w.Subject].Seq}
}

func (w Write) id() string {
	if w.Event != nil {
		return w.Event.GetEventId()
	}
	return w.Claim.GetEventId()
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
	case w.Claim != nil && w.Event == nil:
		data, err = proto.Marshal(w.Claim)
		m.Header.Set(HeaderType, typeClaim)
		m.Header.Set(HeaderEventID, w.Claim.GetEventId())
	default:
		return nil, fmt.Errorf("eventstore: write to %s needs exactly one of event and claim", w.Subject)
	}
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", w.Subject, err)
	}
	m.Data = data
	if !w.Unchecked {
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(w.Expect, 10))
	}
	return m, nil
}

func isTransient(err error) bool {
	// No answer, or no server to answer yet (a restart, a leader
	// election): the write may or may not be stored, so it is sent again.
	return errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse)
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
