package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"google.golang.org/protobuf/proto"

	"github.com/leadflow/leadflow/pkg/envelope"
	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Record is one stored event with where and when the stream stored it.
type Record struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Event   *eventv1.Event
	// Type is the type header it was stored with, "" where not read.
	Type string
}

// Raw is one stored message, event or claim, undecoded.
type Raw struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Header  nats.Header
	Data    []byte
}

// loadBatch is how many messages one batched direct-get request asks
// for; the server also caps a response by bytes, so the batched load pages
// on.
const loadBatch = 256

// maxWalk bounds the single gets a load makes along version_before before
// it reads the rest in batches.
const maxWalk = 8

// Load returns the events of one subject in order. The version is the
// sequence of the last one (0 and no error for an empty subject).
func (s *Store) Load(ctx context.Context, subject string) ([]Record, error) {
	return s.LoadAfter(ctx, subject, 0)
}

// LoadAfter is Load for the events after stream sequence after, for
// readers that keep a snapshot.
//
// It asks at once for the subject's last event and its first one after
// after, then follows version_before back from the last (every event names
// the version it was appended at): a history of one or two events comes in
// one round trip, a few more in one single get each. Single direct gets
// are served from the stream's subject index. A batched get is not used
// first because the server ends it with a count of what is still pending,
// and for a subject in the older half of the stream the file store counts
// by walking a block of messages under the lock appends need (measured in
// docs/operations.md); a longer history, or one whose events do not chain,
// is read in batches.
func (s *Store) LoadAfter(ctx context.Context, subject string, after uint64) ([]Record, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	out, want, ok, err := s.walk(ctx, subject, after)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", subject, err)
	}
	if ok {
		return out, nil
	}
	return s.loadBatched(ctx, subject, after, want)
}

// walk reads a subject's events after after along version_before; ok is
// false when the history is longer than maxWalk or does not chain, or a
// replica that answered is behind. want is the sequence of the subject's
// last event as the stream's leader holds it (0: none, or not asked).
func (s *Store) walk(ctx context.Context, subject string, after uint64) ([]Record, uint64, bool, error) {
	st, leader, err := s.direct(ctx)
	if err != nil {
		return nil, 0, false, err
	}
	var (
		first *jetstream.RawStreamMsg
		ferr  error
		wg    sync.WaitGroup
		m     *jetstream.RawStreamMsg
	)
	wg.Go(func() { first, ferr = s.next(ctx, subject, after) })
	m, err = s.last(ctx, st, leader, subject)
	wg.Wait()
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// No last: an empty subject, or a first without a last (two
		// replicas that disagree), which the batches read whole.
		return nil, 0, ferr == nil && first == nil, ferr
	case err != nil || ferr != nil:
		return nil, 0, false, errors.Join(ferr, err)
	case m.Sequence <= after:
		return nil, m.Sequence, true, nil
	case first == nil:
		return nil, m.Sequence, false, nil // the replica that answered is behind
	}
	want := m.Sequence
	var out []Record
	for hops := 0; ; hops++ {
		rec, err := decodeRecord(m)
		if err != nil {
			return nil, want, false, err
		}
		out = append(out, rec)
		if m.Sequence <= first.Sequence {
			break
		}
		prev := rec.Event.GetVersionBefore()
		switch {
		case prev == first.Sequence:
			m = first
			continue
		case prev < first.Sequence || prev == VersionUnknown || hops == maxWalk:
			return nil, want, false, nil
		}
		if m, err = st.GetMsg(ctx, prev); errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil, want, false, nil // a replica behind the one that answered last: batches
		} else if err != nil {
			return nil, want, false, err
		}
		if m.Subject != subject {
			return nil, want, false, nil
		}
	}
	if m.Sequence != first.Sequence {
		return nil, want, false, nil
	}
	slices.Reverse(out)
	return out, want, true, nil
}

// LoadEvery is Load without the walk: every event stored under subject,
// in order, read in batches. Load follows version_before, which checked
// appends keep whole; a write that bypassed the check can name a version
// before the last, and the walk then steps over the events between. An
// operator looking for what broke (leadctl) reads them all.
func (s *Store) LoadEvery(ctx context.Context, subject string) ([]Record, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	st, leader, err := s.direct(ctx)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", subject, err)
	}
	m, err := s.last(ctx, st, leader, subject)
	want := uint64(0)
	switch {
	case err == nil:
		want = m.Sequence
	case !errors.Is(err, jetstream.ErrMsgNotFound):
		return nil, fmt.Errorf("load %s: %w", subject, err)
	}
	return s.loadBatched(ctx, subject, 0, want)
}

// loadBatched reads a subject's events after after with batched direct
// gets. The replica that answers may be behind the leader: until the
// history reaches want, it is read again.
func (s *Store) loadBatched(ctx context.Context, subject string, after, want uint64) ([]Record, error) {
	for wait := time.Millisecond; ; wait = min(2*wait, 50*time.Millisecond) {
		out, err := s.batches(ctx, subject, after)
		if err != nil {
			return nil, err
		}
		if want == 0 || len(out) > 0 && out[len(out)-1].Seq >= want {
			return out, nil
		}
		// A replica catches up in milliseconds: shorter waits than backoff's.
		if err := sleep(ctx, wait); err != nil {
			return nil, fmt.Errorf("load %s: every replica asked was behind the leader's sequence %d: %w", subject, want, err)
		}
	}
}

func (s *Store) batches(ctx context.Context, subject string, after uint64) ([]Record, error) {
	var out []Record
	from := after + 1
	for {
		it, err := jetstreamext.GetBatch(ctx, s.js, s.stream, loadBatch,
			jetstreamext.GetBatchSubject(subject), jetstreamext.GetBatchSeq(from))
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", subject, err)
		}
		more := false
		for m, err := range it {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", subject, err)
			}
			rec, err := decodeRecord(m)
			if err != nil {
				return nil, err
			}
			out = append(out, rec)
			from = m.Sequence + 1
			// The server counts the subject's messages still to come.
			more = m.Header.Get("Nats-Num-Pending") != "0"
		}
		if !more {
			return out, nil
		}
	}
}

// direct is a handle on the stream for single direct gets, made once
// (making one reads the stream's info). leader is true when the stream
// keeps more than one replica: any of them answers a direct get, and a
// follower serves them while it is behind (once 90% caught up), so a
// load asks the leader for the subject's last message, which holds every
// acknowledged write.
func (s *Store) direct(ctx context.Context) (jetstream.Stream, bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.st != nil {
		return s.st, s.replicated, nil
	}
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return nil, false, err
	}
	s.st, s.replicated = st, st.CachedInfo().Config.Replicas > 1
	return st, s.replicated, nil
}

// leaderLast is the subject's last message as the stream's leader holds
// it.
func (s *Store) leaderLast(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	return s.leaderGet(ctx, leaderGetRequest{LastFor: subject})
}

// last is the subject's last message from st, or from the leader when
// leader (see direct).
func (s *Store) last(ctx context.Context, st jetstream.Stream, leader bool, subject string) (*jetstream.RawStreamMsg, error) {
	if leader {
		return s.leaderLast(ctx, subject)
	}
	return st.GetLastMsgForSubject(ctx, subject)
}

// leaderGetRequest is the stream API's message get request.
type leaderGetRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
}

func (s *Store) leaderGet(ctx context.Context, r leaderGetRequest) (*jetstream.RawStreamMsg, error) {
	return leaderGet(ctx, s.js, s.stream, r)
}

// LeaderLast is the subject's last message in stream as the stream's
// leader holds it (jetstream.ErrMsgNotFound if none): what a direct get
// answered by a replica behind the leader can miss.
func LeaderLast(ctx context.Context, js jetstream.JetStream, stream, subject string) (*jetstream.RawStreamMsg, error) {
	return leaderGet(ctx, js, stream, leaderGetRequest{LastFor: subject})
}

// LeaderMsg is stream's message seq as the stream's leader holds it
// (jetstream.ErrMsgNotFound if it has none): a replica behind the leader
// answers a direct get "not found" for a message it has not caught up to.
func LeaderMsg(ctx context.Context, js jetstream.JetStream, stream string, seq uint64) (*jetstream.RawStreamMsg, error) {
	return leaderGet(ctx, js, stream, leaderGetRequest{Seq: seq})
}

// leaderGet is a message get through the stream API, which only the
// stream's leader answers, where a direct get is answered by any replica.
// It costs more than a direct get, so it is asked only where a replica
// behind would give a wrong answer.
func leaderGet(ctx context.Context, js jetstream.JetStream, stream string, r leaderGetRequest) (*jetstream.RawStreamMsg, error) {
	req, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	msg, err := js.Conn().RequestWithContext(ctx, jetstream.DefaultAPIPrefix+"STREAM.MSG.GET."+stream, req)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Error *struct {
			Code        int    `json:"code"`
			ErrCode     int    `json:"err_code"`
			Description string `json:"description"`
		} `json:"error"`
		Message *struct {
			Subject string    `json:"subject"`
			Seq     uint64    `json:"seq"`
			Header  []byte    `json:"hdrs"`
			Data    []byte    `json:"data"`
			Time    time.Time `json:"time"`
		} `json:"message"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return nil, fmt.Errorf("message get from the leader: %w", err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrCode == int(jetstream.JSErrCodeMessageNotFound):
		return nil, jetstream.ErrMsgNotFound
	case resp.Error != nil:
		return nil, &jetstream.APIError{Code: resp.Error.Code, ErrorCode: jetstream.ErrorCode(resp.Error.ErrCode), Description: resp.Error.Description}
	case resp.Message == nil:
		return nil, fmt.Errorf("message get from the leader: %w", jetstream.ErrInvalidJetStreamResponse)
	}
	out := &jetstream.RawStreamMsg{Subject: resp.Message.Subject, Sequence: resp.Message.Seq, Data: resp.Message.Data, Time: resp.Message.Time}
	if len(resp.Message.Header) > 0 {
		if out.Header, err = nats.DecodeHeadersMsg(resp.Message.Header); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Version is the sequence of the subject's last message, 0 if none. On a
// replicated stream it is the leader's, so it counts every acknowledged
// write (see direct).
func (s *Store) Version(ctx context.Context, subject string) (uint64, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	_, leader, err := s.direct(ctx)
	if err != nil {
		return 0, fmt.Errorf("version of %s: %w", subject, err)
	}
	if !leader {
		last, err := s.Last(ctx, subject)
		if err != nil {
			return 0, err
		}
		return last[subject].Seq, nil
	}
	m, err := s.leaderLast(ctx, subject)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return 0, nil
	case err != nil:
		return 0, fmt.Errorf("version of %s: %w", subject, err)
	}
	return m.Sequence, nil
}

// Last returns the last message of each subject that has one, in one
// request. Subjects without messages are absent from the map.
func (s *Store) Last(ctx context.Context, subjects ...string) (map[string]Raw, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	out := make(map[string]Raw, len(subjects))
	if len(subjects) == 0 {
		return out, nil
	}
	it, err := jetstreamext.GetLastMsgsFor(ctx, s.js, s.stream, subjects)
	if err != nil {
		return nil, fmt.Errorf("last of %d subjects: %w", len(subjects), err)
	}
	for m, err := range it {
		if errors.Is(err, jetstreamext.ErrNoMessages) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("last of %d subjects: %w", len(subjects), err)
		}
		out[m.Subject] = rawOf(m)
	}
	return out, nil
}

// Get returns the message stored at one stream sequence.
func (s *Store) Get(ctx context.Context, seq uint64) (Raw, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	st, leader, err := s.direct(ctx)
	if err != nil {
		return Raw{}, fmt.Errorf("get %d: %w", seq, err)
	}
	m, err := st.GetMsg(ctx, seq)
	if leader && errors.Is(err, jetstream.ErrMsgNotFound) {
		m, err = s.leaderGet(ctx, leaderGetRequest{Seq: seq}) // a replica behind
	}
	if err != nil {
		return Raw{}, fmt.Errorf("get %d: %w", seq, err)
	}
	return rawOf(m), nil
}

func rawOf(m *jetstream.RawStreamMsg) Raw {
	return Raw{Seq: m.Sequence, Subject: m.Subject, Time: m.Time, Header: m.Header, Data: m.Data}
}

// DecodeEvent decodes a stored event.
func DecodeEvent(data []byte) (*eventv1.Event, error) {
	ev := &eventv1.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	return ev, nil
}

// DecodeLeadEvent decodes the event a consumer received on a lead
// subject with the type header typ, and refuses one that is malformed
// (envelope.Check): folding it would put the lead in a state nobody wrote.
func DecodeLeadEvent(subject, typ string, data []byte) (*eventv1.Event, error) {
	ev, err := DecodeEvent(data)
	if err != nil {
		return nil, err
	}
	if err := envelope.Check(ev, LeadID(subject), typ); err != nil {
		return nil, fmt.Errorf("decode event: %w", err)
	}
	return ev, nil
}

// DecodeClaim decodes a stored claim.
func DecodeClaim(r Raw) (*eventv1.Claim, error) {
	if t := r.Header.Get(HeaderType); t != typeClaim {
		return nil, fmt.Errorf("decode claim %s: message is a %q", r.Subject, t)
	}
	c := &eventv1.Claim{}
	if err := proto.Unmarshal(r.Data, c); err != nil {
		return nil, fmt.Errorf("decode claim %s: %w", r.Subject, err)
	}
	return c, nil
}

func decodeRecord(m *jetstream.RawStreamMsg) (Record, error) {
	ev, err := DecodeEvent(m.Data)
	if err != nil {
		return Record{}, fmt.Errorf("%s seq %d: %w", m.Subject, m.Sequence, err)
	}
	return Record{Seq: m.Sequence, Subject: m.Subject, Time: m.Time, Event: ev, Type: m.Header.Get(HeaderType)}, nil
}

// CaughtUp reports whether a consumer reading the stream in order, whose
// last message read is at stream sequence read, has had everything there
// is: nothing pending on the server, and nothing sent that it has not read
// yet (on its way, or in the client's buffer: NumPending does not count
// those, and a read that timed out says nothing of them). A consumer that
// has delivered nothing (started past the stream's end, or just reset)
// counts as caught up when nothing is pending.
func CaughtUp(info *jetstream.ConsumerInfo, read uint64) bool {
	return info.NumPending == 0 && (info.Delivered.Consumer == 0 || info.Delivered.Stream <= read)
}
