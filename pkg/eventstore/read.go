package eventstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
	"google.golang.org/protobuf/proto"

	eventv1 "github.com/leadflow/leadflow/pkg/gen/leadflow/event/v1"
)

// Record is one stored event with where and when the stream stored it.
type Record struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Event   *eventv1.Event
}

// Raw is one stored message, event or claim, undecoded.
type Raw struct {
	Seq     uint64
	Subject string
	Time    time.Time
	Header  nats.Header
	Data    []byte
}

// loadBatch is how many messages one direct-get request asks for; the
// server also caps a response by bytes, so Load pages on.
const loadBatch = 256

// Load returns the events of one subject in order. The version is the
// sequence of the last one (0 and no error for an empty subject). It reads
// through the stream's subject index with direct-get batches: one round
// trip for an ordinary lead, no consumer, no scan.
func (s *Store) Load(ctx context.Context, subject string) ([]Record, error) {
	return s.LoadAfter(ctx, subject, 0)
}

// LoadAfter is Load for the events after stream sequence after, for
// readers that keep a snapshot.
func (s *Store) LoadAfter(ctx context.Context, subject string, after uint64) ([]Record, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
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

// Version is the sequence of the subject's last message, 0 if none.
func (s *Store) Version(ctx context.Context, subject string) (uint64, error) {
	last, err := s.Last(ctx, subject)
	if err != nil {
		return 0, err
	}
	return last[subject].Seq, nil
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
		out[m.Subject] = Raw{Seq: m.Sequence, Subject: m.Subject, Time: m.Time, Header: m.Header, Data: m.Data}
	}
	return out, nil
}

// Get returns the message stored at one stream sequence.
func (s *Store) Get(ctx context.Context, seq uint64) (Raw, error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	st, err := s.js.Stream(ctx, s.stream)
	if err != nil {
		return Raw{}, fmt.Errorf("get %d: %w", seq, err)
	}
	m, err := st.GetMsg(ctx, seq)
	if err != nil {
		return Raw{}, fmt.Errorf("get %d: %w", seq, err)
	}
	return Raw{Seq: m.Sequence, Subject: m.Subject, Time: m.Time, Header: m.Header, Data: m.Data}, nil
}

// DecodeEvent decodes a stored event.
func DecodeEvent(data []byte) (*eventv1.Event, error) {
	ev := &eventv1.Event{}
	if err := proto.Unmarshal(data, ev); err != nil {
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
	return Record{Seq: m.Sequence, Subject: m.Subject, Time: m.Time, Event: ev}, nil
}
