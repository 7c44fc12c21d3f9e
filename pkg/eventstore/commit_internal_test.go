package eventstore

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// After an attempt that got no answer (it may be stored), a refusal
// whose second look for the commit fails is an unknown outcome, not a
// conflict: a caller told "conflict" decides again and writes twice.
func TestAFailedLookAfterAnUnansweredAttemptIsAnUnknownOutcome(t *testing.T) {
	s, lead := storeOfOne(t)
	event := func() *eventv1.Event { return webVisit(t, lead) }
	if _, err := s.Append(context.Background(), LeadSubject(lead), 0, event()); err != nil {
		t.Fatal(err) // another writer's: the subject has moved
	}
	// The second look for the commit fails, or the first at the
	// subject's last sequence does.
	for _, failing := range []struct {
		look string
		nth  int
	}{{"stored", 2}, {"last", 1}} {
		attempts, looks := 0, 0
		lose := func() error {
			if attempts++; attempts == 1 {
				return context.DeadlineExceeded // lost on the way
			}
			return nil
		}
		fail := func(look string) bool {
			if look == failing.look {
				looks++
			}
			return look == failing.look && looks == failing.nth
		}
		answer.Store(&lose)
		lookFailed.Store(&fail)
		_, err := s.Append(context.Background(), LeadSubject(lead), 0, event())
		answer.Store(nil)
		lookFailed.Store(nil)
		if !errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrConflict) {
			t.Fatalf("a refusal after an unanswered attempt, look %s %d failed: %v, want an unknown outcome", failing.look, failing.nth, err)
		}
	}
}

// A commit refused while a batch on its subject is in process (maybe its
// own, sent before) until the caller's deadline ends has an unknown
// outcome, and is no conflict: a caller told "conflict" decides again.
func TestARefusalWhileNothingMovedOutlastingTheDeadlineIsNoConflict(t *testing.T) {
	s, lead := storeOfOne(t)
	ev := webVisit(t, lead)
	inProcess := func() error { // what the leader answers while a batch on the subject is in process
		return &jetstream.APIError{Code: 400, ErrorCode: jetstream.JSErrCodeStreamWrongLastSequence, Description: "wrong last sequence: 0"}
	}
	answer.Store(&inProcess)
	t.Cleanup(func() { answer.Store(nil) })
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err := s.Append(ctx, LeadSubject(lead), 0, ev)
	if !errors.Is(err, ErrUnknownOutcome) || errors.Is(err, ErrConflict) {
		t.Fatalf("refused while nothing moved until the deadline: %v (conflict %v), want an unknown outcome and no conflict", err, errors.Is(err, ErrConflict))
	}
}

// storeOfOne is a store on a server of the test's own, and a lead id.
func storeOfOne(t *testing.T) (*Store, string) {
	t.Helper()
	js := startJS(t)
	if _, err := EnsureStream(context.Background(), js, StreamConfig{}); err != nil {
		t.Fatal(err)
	}
	return New(js, ""), uuid.NewString()
}

// webVisit is an event of lead, not yet stored.
func webVisit(t *testing.T, lead string) *eventv1.Event {
	t.Helper()
	ev, err := envelope.NewEvent(lead, &eventv1.ActivityRecorded{ActivityId: uuid.NewString(), Type: eventv1.ActivityType_ACTIVITY_TYPE_WEB_VISIT},
		envelope.Meta{CorrelationID: "c"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// A write of CommitEach stored whose answer never comes (a leader gone
// quiet) is sent again and found stored: success with its sequence, not
// an unknown outcome that a caller without a key sends twice.
func TestCommitEachFindsAWriteWhoseAnswerNeverCame(t *testing.T) {
	s, lead := storeOfOne(t)
	s.js = quietAnswers{s.js}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	seqs, errs := s.CommitEach(ctx, []Write{{Subject: LeadSubject(lead), Event: webVisit(t, lead)}})
	if errs[0] != nil || seqs[0] == 0 {
		t.Fatalf("a stored write whose answer never came: %d, %v; want its sequence", seqs[0], errs[0])
	}
	recs, err := s.Load(ctx, LeadSubject(lead))
	if err != nil || len(recs) != 1 || recs[0].Seq != seqs[0] {
		t.Fatalf("the lead holds %v (%v), want the one write at %d", recs, err, seqs[0])
	}
}

// quietAnswers stores asynchronous publishes but never answers them.
type quietAnswers struct{ jetstream.JetStream }

func (q quietAnswers) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	if _, err := q.JetStream.PublishMsgAsync(m, opts...); err != nil {
		return nil, err
	}
	return silent{m}, nil
}

type silent struct{ m *nats.Msg }

func (s silent) Ok() <-chan *jetstream.PubAck { return nil }
func (s silent) Err() <-chan error            { return nil }
func (s silent) Msg() *nats.Msg               { return s.m }

// Once one answer is late, the writes answered by then are not sent
// again: only the late one is settled through Commit.
func TestCommitEachSendsAgainOnlyWhatIsUnanswered(t *testing.T) {
	s, _ := storeOfOne(t)
	js := &firstSilent{JetStream: s.js}
	s.js = js
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	writes := make([]Write, 200)
	for i := range writes {
		lead := uuid.NewString()
		writes[i] = Write{Subject: LeadSubject(lead), Event: webVisit(t, lead)}
	}
	seqs, errs := s.CommitEach(ctx, writes)
	for i := range writes {
		if errs[i] != nil || seqs[i] == 0 {
			t.Fatalf("write %d: %d, %v", i, seqs[i], errs[i])
		}
	}
	if n := js.syncs.Load(); n != 1 {
		t.Fatalf("%d writes sent again, want the one unanswered", n)
	}
}

// firstSilent stores every asynchronous publish but never answers the
// first; it counts the synchronous ones.
type firstSilent struct {
	jetstream.JetStream
	async, syncs atomic.Int32
}

func (q *firstSilent) PublishMsgAsync(m *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f, err := q.JetStream.PublishMsgAsync(m, opts...)
	if err != nil || q.async.Add(1) > 1 {
		return f, err
	}
	return silent{m}, nil
}

func (q *firstSilent) PublishMsg(ctx context.Context, m *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	q.syncs.Add(1)
	return q.JetStream.PublishMsg(ctx, m, opts...)
}

// With the server answering nothing, every write of a large CommitEach
// is an unknown outcome (each was sent), also those that waited for a
// turn to be settled until the deadline.
func TestCommitEachWithNoAnswersIsUnknownForEveryWrite(t *testing.T) {
	everyUnknown(t, func(js jetstream.JetStream) jetstream.JetStream { return deaf{js} }, 200)
}

// everyUnknown commits n writes through CommitEach on the store's
// JetStream as wrap makes it, with 3 s to go, and wants each an unknown
// outcome.
func everyUnknown(t *testing.T, wrap func(jetstream.JetStream) jetstream.JetStream, n int) {
	t.Helper()
	s, _ := storeOfOne(t)
	s.js = wrap(s.js)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	writes := make([]Write, n)
	for i := range writes {
		lead := uuid.NewString()
		writes[i] = Write{Subject: LeadSubject(lead), Event: webVisit(t, lead)}
	}
	_, errs := s.CommitEach(ctx, writes)
	for i, err := range errs {
		if !errors.Is(err, ErrUnknownOutcome) {
			t.Fatalf("write %d: %v, want an unknown outcome", i, err)
		}
	}
}

// deaf sends nothing and answers nothing until the caller gives up.
type deaf struct{ jetstream.JetStream }

func (d deaf) PublishMsgAsync(m *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	return silent{m}, nil
}

func (d deaf) PublishMsg(ctx context.Context, _ *nats.Msg, _ ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	<-ctx.Done()
	return nil, ctx.Err()
}

// A write whose send failed with its connection (it may be stored) and
// whose settling meets only "no responders" until the deadline is an
// unknown outcome, not a plain failure.
func TestCommitEachAfterADroppedConnectionIsUnknown(t *testing.T) {
	everyUnknown(t, func(js jetstream.JetStream) jetstream.JetStream { return dropped{js} }, 10)
}

// dropped fails every asynchronous publish with its connection and
// answers every synchronous one "no responders".
type dropped struct{ jetstream.JetStream }

func (d dropped) PublishMsgAsync(m *nats.Msg, _ ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	errs := make(chan error, 1)
	errs <- nats.ErrDisconnected
	return failed{m, errs}, nil
}

func (d dropped) PublishMsg(context.Context, *nats.Msg, ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	return nil, nats.ErrNoResponders
}

type failed struct {
	m    *nats.Msg
	errs chan error
}

func (f failed) Ok() <-chan *jetstream.PubAck { return nil }
func (f failed) Err() <-chan error            { return f.errs }
func (f failed) Msg() *nats.Msg               { return f.m }
